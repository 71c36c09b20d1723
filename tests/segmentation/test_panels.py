from __future__ import annotations

import os

import matplotlib
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from dcsm_lightning.palette import voc_palette
from dcsm_lightning.segmentation.panels import log_panels, panel_grid, top_candidate

B, K, H, W, PAD = 3, 4, 8, 10, 2


def _inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    rgb = torch.randint(0, 256, (B, H, W, 3), generator=generator, dtype=torch.uint8)
    candidates = torch.zeros(B, K, dtype=torch.bool)
    candidates[0, [1, 3]] = True
    candidates[1, 2] = True  # image 2: no candidate
    maps = torch.zeros(B, K, H, W)
    maps[0, 1] = 0.2
    maps[0, 3] = 0.7  # the larger map: the top candidate of image 0
    maps[1, 2] = 0.45
    masks = torch.randint(0, K + 1, (B, H, W), generator=generator)
    masks[:, 0, 0] = 255
    return rgb, maps, masks, candidates


def _tile(grid: torch.Tensor, row: int, col: int) -> np.ndarray:
    top, left = PAD + row * (H + PAD), PAD + col * (W + PAD)
    return grid[:, top : top + H, left : left + W].permute(1, 2, 0).numpy()


def test_panel_grid_layout_and_content():
    rgb, maps, masks, candidates = _inputs()
    grid = panel_grid(rgb, maps, masks, candidates, max_images=2)
    assert grid.dtype == torch.uint8
    assert tuple(grid.shape) == (3, 2 * (H + PAD) + PAD, 4 * (W + PAD) + PAD)
    jet = matplotlib.colormaps["jet"]
    for b in range(2):
        np.testing.assert_array_equal(_tile(grid, b, 0), rgb[b].numpy())
        np.testing.assert_array_equal(_tile(grid, b, 2), voc_palette()[masks[b].numpy()])
        overlay = _tile(grid, b, 3)
        background = (masks[b] == 0).numpy()
        np.testing.assert_array_equal(overlay[background], rgb[b].numpy()[background])
    assert (_tile(grid, 0, 1) == np.array(jet(0.7, bytes=True)[:3])).all()
    assert (_tile(grid, 1, 1) == np.array(jet(0.45, bytes=True)[:3])).all()
    full = panel_grid(rgb, maps, masks, candidates)  # 3 < max_images=4: all rows
    assert full.shape[1] == 3 * (H + PAD) + PAD
    assert (_tile(full, 2, 1) == np.array(jet(0.0, bytes=True)[:3])).all()  # no candidate


def test_top_candidate_prefers_scores():
    rgb, maps, masks, candidates = _inputs()
    assert top_candidate(maps[0], candidates[0]) == 3
    assert top_candidate(maps[0], candidates[0], torch.tensor([0.9, 0.8, 0.1, 0.2])) == 1
    assert top_candidate(maps[2], candidates[2]) is None


def test_panel_grid_rejects_bad_shapes():
    rgb, maps, masks, candidates = _inputs()
    with pytest.raises(ValueError, match="masks"):
        panel_grid(rgb, maps, masks[:, :4], candidates)
    with pytest.raises(ValueError, match="candidates"):
        panel_grid(rgb, maps, masks, candidates[:, :2])
    with pytest.raises(ValueError, match="max_images"):
        panel_grid(rgb, maps, masks, candidates, max_images=0)


def test_log_panels_tensorboard_writes_an_image_event(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    grid = panel_grid(*_inputs(), max_images=2)
    logger = TensorBoardLogger(str(tmp_path), name="tb", version=0)
    assert log_panels(logger, "val/panels", grid, step=7)
    logger.experiment.flush()
    events = [f for f in os.listdir(logger.log_dir) if f.startswith("events.out.tfevents")]
    assert events
    accumulator = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    accumulator.Reload()
    assert "val/panels" in accumulator.Tags()["images"]
    (image,) = accumulator.Images("val/panels")
    assert image.step == 7
    assert (image.height, image.width) == tuple(grid.shape[1:])


def test_log_panels_is_a_no_op_without_image_support(tmp_path):
    grid = panel_grid(*_inputs(), max_images=1)
    csv_logger = CSVLogger(str(tmp_path), name="csv")
    assert not log_panels(csv_logger, "val/panels", grid, step=0)
    assert not log_panels(None, "val/panels", grid, step=0)
    assert os.listdir(tmp_path) == []  # the CSV logger was not even touched
    tb = TensorBoardLogger(str(tmp_path), name="tb", version=0)
    assert log_panels([csv_logger, tb], "val/panels", grid, step=0)
    tb.experiment.flush()
    assert os.listdir(tmp_path) == ["tb"]


def test_heatmap_overlay_blends_the_colour_map_on_the_image():
    from dcsm_lightning import heatmap_overlay
    from dcsm_lightning.data.adapter import rgb_from_image

    gen = torch.Generator().manual_seed(0)
    image = torch.randn(3, 8, 8, generator=gen)  # ImageNet-normalised, as a model reads it
    heat = torch.rand(8, 8, generator=gen)
    rgb = rgb_from_image(image[None])[0].numpy()
    colours = matplotlib.colormaps["jet"](heat.numpy(), bytes=True)[..., :3].astype(np.float64)
    expected = np.clip(np.rint(0.7 * rgb + 0.3 * colours), 0, 255).astype(np.uint8)
    assert np.abs(heatmap_overlay(image, heat, alpha=0.3).astype(int) - expected).max() <= 1
    same = heatmap_overlay(rgb, heat.numpy(), 0.3)
    assert np.array_equal(same, heatmap_overlay(image, heat, 0.3))
    with pytest.raises(ValueError, match="heat must be H x W"):
        heatmap_overlay(rgb, np.zeros((4, 4)))
