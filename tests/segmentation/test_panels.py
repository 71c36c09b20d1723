from __future__ import annotations

import os

import matplotlib
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from dcsm_lightning.data.adapter import SegmentationBatch
from dcsm_lightning.outputs.canvas import figure_rgb
from dcsm_lightning.palette import colorize_labels
from dcsm_lightning.segmentation.methods import Method
from dcsm_lightning.segmentation.output import SegmentationOutput
from dcsm_lightning.segmentation.panels import GridCollector, grid_rows, log_figure, top_candidate

B, K, S = 3, 4, 10
NAMES = ["background", "a", "b", "c", "d"]


def _output(mask: bool = True, refined: bool = True) -> SegmentationOutput:
    """A hand-made batch: image 0 is 6 x 10 inside its 10 x 10 letterbox (padding void)."""
    generator = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (B, S, S, 3), generator=generator, dtype=torch.uint8)
    valid = torch.ones(B, S, S, dtype=torch.bool)
    valid[0, 6:] = False
    candidates = torch.zeros(B, K, dtype=torch.bool)
    candidates[0, [1, 3]] = True
    candidates[1, 2] = True
    probs = torch.tensor([[0.1, 0.6, 0.2, 0.9], [0.3, 0.2, 0.4, 0.1], [0.2] * 4])
    maps = torch.zeros(B, K, S, S)
    maps[0, 1] = 0.9  # the larger map, but class 3 scores higher: class 3 is shown
    maps[0, 3] = torch.linspace(0, 1, S * S).view(S, S)
    maps[1, 2] = 0.45
    labels = torch.randint(0, K + 1, (B, S, S), generator=generator)
    labels[~valid] = 255
    masks = {Method("dcsm"): labels}
    if refined:
        masks[Method("dcsm", "crf")] = labels.flip(-1)
    batch = SegmentationBatch(
        image=torch.zeros(B, 3, S, S), rgb=rgb, ids=["x", "y", "z"],
        orig_size=torch.tensor([[60, 100], [10, 10], [10, 10]]),
        mask=labels.roll(1, -1) if mask else None, valid=valid,
    )  # fmt: skip
    return SegmentationOutput(batch, probs, candidates, {"dcsm": maps}, masks)


def test_grid_rows_cut_out_the_image_and_show_its_top_candidate():
    out = _output()
    rows = grid_rows(out, "dcsm", NAMES, refiner="crf", max_images=2)
    assert [r.name for r in rows] == ["x", "y"]
    first = rows[0]
    assert first.image.shape == (6, 10, 3)  # the letterbox padding is cut off
    np.testing.assert_array_equal(first.image, out.batch.rgb[0, :6].numpy())
    np.testing.assert_array_equal(first.mask, out.masks["dcsm"][0, :6].numpy())
    np.testing.assert_array_equal(first.refined, out.masks["dcsm+crf"][0, :6].numpy())
    np.testing.assert_array_equal(first.truth, out.batch.mask[0, :6].numpy())
    assert first.heat_label == "d 0.90"  # class 3 (label 4, "d"): the highest probability
    np.testing.assert_allclose(first.heat, out.maps["dcsm"][0, 3, :6].numpy())
    assert rows[1].heat_label == "c 0.40"
    third = grid_rows(out, "dcsm", NAMES)[2]
    assert third.heat is None and third.heat_label == "no candidate"


def test_grid_rows_leave_out_what_the_batch_lacks():
    rows = grid_rows(_output(mask=False, refined=False), "dcsm", NAMES, refiner="crf")
    assert all(r.truth is None and r.refined is None for r in rows)
    assert len(grid_rows(_output(), "dcsm", NAMES, max_images=0)) == 0


def test_top_candidate_prefers_scores():
    maps, candidates = _output().maps["dcsm"], _output().candidates
    assert top_candidate(maps[0], candidates[0]) == 1  # the largest total saliency
    assert top_candidate(maps[0], candidates[0], torch.tensor([0.9, 0.8, 0.1, 0.2])) == 1
    assert top_candidate(maps[0], candidates[0], torch.tensor([0.1, 0.2, 0.1, 0.3])) == 3
    assert top_candidate(maps[2], candidates[2]) is None


def test_collector_fills_up_to_its_limit_over_batches():
    collector = GridCollector(4, "dcsm", NAMES, "crf")
    collector.add(_output())
    collector.add(_output())
    collector.add(_output())
    assert [r.name for r in collector.rows] == ["x", "y", "z", "x"]
    figure = collector.figure()
    titles = [ax.get_title() for ax in figure.axes[:5]]
    assert titles == ["image", "ground truth", "dcsm map on image", "dcsm", "dcsm+crf"]
    first_mask = np.asarray(figure.axes[3].images[0].get_array())
    np.testing.assert_array_equal(first_mask, colorize_labels(collector.rows[0].mask))
    assert GridCollector(0, "dcsm", NAMES).figure() is None
    with pytest.raises(ValueError, match="rows must be >= 0"):
        GridCollector(-1, "dcsm", NAMES)


def test_log_figure_tensorboard_writes_an_image_event(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    collector = GridCollector(2, "dcsm", NAMES)
    collector.add(_output())
    figure = collector.figure()
    logger = TensorBoardLogger(str(tmp_path), name="tb", version=0)
    assert log_figure(logger, "val/grid", figure, step=7)
    logger.experiment.flush()
    events = [f for f in os.listdir(logger.log_dir) if f.startswith("events.out.tfevents")]
    assert events
    accumulator = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    accumulator.Reload()
    assert "val/grid" in accumulator.Tags()["images"]
    (image,) = accumulator.Images("val/grid")
    assert image.step == 7
    assert (image.height, image.width) == figure_rgb(figure).shape[:2]


def test_log_figure_is_a_no_op_without_image_support(tmp_path):
    collector = GridCollector(1, "dcsm", NAMES)
    collector.add(_output())
    figure = collector.figure()
    csv_logger = CSVLogger(str(tmp_path), name="csv")
    assert not log_figure(csv_logger, "val/grid", figure, step=0)
    assert not log_figure(None, "val/grid", figure, step=0)
    assert os.listdir(tmp_path) == []  # the CSV logger was not even touched
    tb = TensorBoardLogger(str(tmp_path), name="tb", version=0)
    assert log_figure([csv_logger, tb], "val/grid", figure, step=0)
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
