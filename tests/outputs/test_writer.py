from __future__ import annotations

import json
import logging
import os

import lightning.pytorch as pl
import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import dcsm_lightning.outputs.renderers as renderers_module
from dcsm_lightning.data.transforms import letterbox_extents
from dcsm_lightning.outputs.writer import SegmentationWriter, check_id, default_method
from dcsm_lightning.palette import VOID
from dcsm_lightning.segmentation.callback import SaliencySegmentation, SegmentationOutput
from dcsm_lightning.segmentation.labels import method_name, uncertain_to_void

SIZE = 12
NAMES = ["aeroplane", "potted plant", "bird"]  # "potted plant" -> file name "potted_plant"
K = len(NAMES)
# (height, width) on disk: integer and non-integer letterbox scales, portrait and landscape
ORIG_SIZES = [(6, 4), (5, 3), (4, 6), (8, 8)]
IMAGE_COLOUR = (200, 40, 90)  # every real pixel; the padding is the ImageNet mean
MEAN_COLOUR = (124, 116, 104)


def _letterbox(x: torch.Tensor, fill: float) -> tuple[torch.Tensor, tuple[int, int]]:
    """C x H x W -> C x S x S: longer side to S (nearest-exact), image top-left, rest ``fill``."""
    height, width = x.shape[-2:]
    scale = SIZE / max(height, width)
    extent = (round(height * scale), round(width * scale))
    out = torch.full((x.shape[0], SIZE, SIZE), fill, dtype=torch.float32)
    out[:, : extent[0], : extent[1]] = F.interpolate(
        x[None].float(), size=extent, mode="nearest-exact"
    )[0]
    return out, extent


class ContractImages(Dataset):
    """Batches per docs/contracts.md plus ``true_labels`` / ``heat`` for the checks."""

    def __init__(self, seed: int = 0, confidence: torch.Tensor | None = None) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.items = []
        for index, (height, width) in enumerate(ORIG_SIZES):
            labels = torch.randint(0, K + 1, (height, width), generator=generator)
            labels[0, 0] = VOID
            candidates = torch.rand(K, generator=generator) > 0.4
            candidates[index % K] = True
            mask, extent = _letterbox(labels[None], VOID)
            valid = torch.zeros(SIZE, SIZE, dtype=torch.bool)
            valid[: extent[0], : extent[1]] = True
            rgb = torch.tensor(MEAN_COLOUR, dtype=torch.uint8).expand(SIZE, SIZE, 3).clone()
            rgb[valid] = torch.tensor(IMAGE_COLOUR, dtype=torch.uint8)
            # class k's map is the constant heat[k] on the image, 0 on the padding
            heat = torch.tensor([0.2, 0.45, 0.8]) * candidates  # off colormap bin edges
            maps = heat[:, None, None] * valid
            if confidence is not None:  # per-pixel top map value, for the uncertainty test
                conf, _ = _letterbox(confidence[index][None], 0.0)
                maps = torch.zeros(K, SIZE, SIZE)
                maps[index % K] = conf[0]
            self.items.append(
                {
                    "image": torch.zeros(3, SIZE, SIZE),
                    "rgb": rgb,
                    "labels": candidates.float(),
                    "mask": mask[0].long(),
                    "valid": valid,
                    "orig_size": torch.tensor([height, width]),
                    "id": f"img{index}",
                    "true_labels": labels,
                    "maps": maps,
                    "probs": torch.rand(K, generator=generator),
                    "candidates": candidates,
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        return {k: v for k, v in item.items() if k != "true_labels"}  # sizes differ


class ContractModule(pl.LightningModule):
    """A module whose segmentation (below) returns "dcsm+crf" = the true mask, "dcsm" = all
    background; ``shift`` moves the "+crf" labels, ``calls`` counts the segmented batches."""

    def __init__(self, shift: int = 0) -> None:
        super().__init__()
        self.shift = shift
        self.calls = 0

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return batch["probs"]


class ContractSegmentation(SaliencySegmentation):
    """The segmentation with canned outputs: ``segment`` reads them from the raw batch."""

    def __init__(self, class_names: list[str] | None) -> None:
        super().__init__([], class_names=class_names, num_classes=K)

    def output_for(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0, stage="predict"):
        pl_module.calls += 1
        mask = batch["mask"]
        shifted = torch.where(mask == VOID, mask, (mask + pl_module.shift) % (K + 1))
        return SegmentationOutput(
            batch=self.batch_adapter(batch, batch_idx),
            probs=batch["probs"],
            candidates=batch["candidates"],
            maps={"dcsm": batch["maps"], "simonyan": batch["maps"] / 2},
            masks={
                "dcsm": torch.where(mask == VOID, mask, 0),
                "simonyan": torch.where(mask == VOID, mask, 1),
                method_name("dcsm", "crf"): shifted,
            },
        )


class NamedData(pl.LightningDataModule):
    def __init__(self, dataset: Dataset) -> None:
        super().__init__()
        self.dataset = dataset
        self.class_names = list(NAMES)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=2)


def _predict(writer, dataset=None, module=None, datamodule=True, callbacks=None):
    dataset = dataset if dataset is not None else ContractImages()
    module = module if module is not None else ContractModule()
    segmentation = ContractSegmentation(NAMES if datamodule else None)
    if callbacks is None:
        callbacks = [writer, segmentation]
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        callbacks=callbacks,
    )
    if datamodule:
        trainer.predict(module, datamodule=NamedData(dataset), return_predictions=False)
    else:
        loader = DataLoader(dataset, batch_size=2)
        trainer.predict(module, dataloaders=loader, return_predictions=False)
    return dataset, module


def _read(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _mtimes(folder) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()
    }


def test_predictions_layout_uncropped_to_orig_size(tmp_path):
    dataset, _ = _predict(SegmentationWriter(str(tmp_path)))
    jet = matplotlib.colormaps["jet"]
    for item in dataset.items:
        image_id, truth = item["id"], item["true_labels"].numpy()
        mask = _read(tmp_path / "masks" / f"{image_id}.png")
        assert mask.shape == tuple(item["orig_size"].tolist())
        np.testing.assert_array_equal(mask, truth)  # "+crf" chosen, letterbox undone exactly

        record = json.loads((tmp_path / "scores" / f"{image_id}.json").read_text())
        cand = [NAMES[k] for k in range(K) if item["candidates"][k]]
        assert record["id"] == image_id and record["method"] == "dcsm+crf"
        assert record["candidates"] == cand
        assert record["scores"] == pytest.approx(
            dict(zip(NAMES, item["probs"].tolist(), strict=True))
        )

        heat_files = sorted(p.name for p in (tmp_path / "heatmaps").glob(f"{image_id}_*.png"))
        safe = [n.replace(" ", "_") for n in cand]
        assert heat_files == sorted(f"{image_id}_{n}.png" for n in safe)
        for k in range(K):
            if not item["candidates"][k]:
                continue
            heat = _read(tmp_path / "heatmaps" / f"{image_id}_{NAMES[k].replace(' ', '_')}.png")
            assert heat.shape == (*truth.shape, 3)
            # the map blended half over the image; a constant map stays constant only if no
            # padding (0) was blended in
            colour = np.array(jet(float(item["maps"][k].max()), bytes=True)[:3])
            assert (heat == np.rint((colour + np.array(IMAGE_COLOUR)) / 2)).all()

        overlay = _read(tmp_path / "overlays" / f"{image_id}.png")
        assert overlay.shape == (*truth.shape, 3)
        assert (overlay[truth == 0] == IMAGE_COLOUR).all()  # background: the image itself
        assert (overlay[truth == 1] != IMAGE_COLOUR).any(axis=-1).all()
    assert not (tmp_path / "SegmentationClass").exists()
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary files left


def test_grid_png_shows_the_first_images_written(tmp_path, monkeypatch):
    import dcsm_lightning.outputs.writer as writer_module

    drawn, original = [], writer_module.save_figure_png
    monkeypatch.setattr(
        writer_module, "save_figure_png",
        lambda path, figure, overwrite: drawn.append(figure) or original(path, figure, overwrite),
    )  # fmt: skip
    bare = tmp_path / "bare"
    _predict(SegmentationWriter(str(bare), heatmap_alpha=1.0))  # grid=0: none
    assert not (bare / "grid.png").exists() and not drawn
    item = ContractImages().items[0]
    heat = _read(bare / "heatmaps" / f"img0_{NAMES[0]}.png")
    colour = matplotlib.colormaps["jet"](float(item["maps"][0].max()), bytes=True)[:3]
    assert (heat == np.array(colour)).all()  # alpha 1: the bare colour map

    _predict(SegmentationWriter(str(tmp_path), grid=3))  # 4 images in batches of 2
    assert _read(tmp_path / "grid.png").ndim == 3
    (figure,) = drawn
    titles = [ax.get_title() for ax in figure.axes[:5]]
    assert titles == ["image", "ground truth", "dcsm map on image", "dcsm", "dcsm+crf"]
    assert [ax.get_ylabel() for ax in figure.axes[:15:5]] == ["img0", "img1", "img2"]
    assert len(figure.axes) == 3 * 5 + 1  # 3 rows of 5 cells, the colour bar
    # a resumed run keeps the grid it finds; pseudo-labels write none
    before = _mtimes(tmp_path)
    _predict(SegmentationWriter(str(tmp_path), grid=3))
    assert _mtimes(tmp_path) == before
    (tmp_path / "scores" / "img3.json").unlink()  # img3 is written again, grid.png kept
    _predict(SegmentationWriter(str(tmp_path), grid=3))
    assert len(drawn) == 2 and _mtimes(tmp_path)["grid.png"] == before["grid.png"]
    _predict(SegmentationWriter(str(tmp_path), grid=3, overwrite=True))
    assert _mtimes(tmp_path)["grid.png"] != before["grid.png"]
    pseudo = tmp_path / "pseudo"
    _predict(SegmentationWriter(str(pseudo), mode="pseudo_labels", grid=3))
    assert not (pseudo / "grid.png").exists()
    with pytest.raises(ValueError, match="grid must be >= 0"):
        SegmentationWriter(str(tmp_path), grid=-1)
    with pytest.raises(ValueError, match="heatmap_alpha"):
        SegmentationWriter(str(tmp_path), heatmap_alpha=1.5)


def test_second_run_skips_and_overwrite_replaces(tmp_path, caplog):
    _predict(SegmentationWriter(str(tmp_path)))
    before = _mtimes(tmp_path)
    writer = SegmentationWriter(str(tmp_path))
    logging.getLogger("lightning.pytorch").addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
            _, module = _predict(writer)
    finally:
        logging.getLogger("lightning.pytorch").removeHandler(caplog.handler)
    assert (writer.written, writer.skipped) == (0, 4)
    assert "0 images written, 4 skipped" in caplog.text
    assert _mtimes(tmp_path) == before

    dataset, _ = _predict(
        SegmentationWriter(str(tmp_path), overwrite=True), module=ContractModule(shift=1)
    )
    for item in dataset.items:
        truth = item["true_labels"].numpy()
        expected = np.where(truth == VOID, truth, (truth + 1) % (K + 1))
        np.testing.assert_array_equal(_read(tmp_path / "masks" / f"{item['id']}.png"), expected)


def test_interrupted_run_resumes_with_the_rest(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_save_json = renderers_module.save_json

    def failing_save_json(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("stopped during img2")
        return real_save_json(*args, **kwargs)

    monkeypatch.setattr(renderers_module, "save_json", failing_save_json)
    with pytest.raises(RuntimeError, match="stopped during img2"):
        _predict(SegmentationWriter(str(tmp_path)))
    monkeypatch.setattr(renderers_module, "save_json", real_save_json)
    assert sorted(p.name for p in (tmp_path / "scores").iterdir()) == ["img0.json", "img1.json"]
    assert (tmp_path / "masks" / "img2.png").exists()  # written before the marker
    assert not (tmp_path / "masks" / "img3.png").exists()
    before = _mtimes(tmp_path)

    writer = SegmentationWriter(str(tmp_path))
    assert writer.done_ids() == {"img0", "img1"}
    _predict(writer)
    assert (writer.written, writer.skipped) == (2, 2)
    after = _mtimes(tmp_path)
    assert {k: after[k] for k in before} == before  # nothing already there was rewritten
    assert sorted(p.name for p in (tmp_path / "scores").iterdir()) == [
        f"img{i}.json" for i in range(4)
    ]
    assert writer.done_ids() == {f"img{i}" for i in range(4)}


def test_pseudo_labels_layout_and_uncertain_pixels(tmp_path):
    generator = torch.Generator().manual_seed(1)
    levels = torch.tensor([0.05, 0.4, 0.6, 0.95])  # winning prob .95 .6 .6 .95
    confidence = [levels[torch.randint(0, 4, size, generator=generator)] for size in ORIG_SIZES]
    dataset = ContractImages(confidence=confidence)
    writer = SegmentationWriter(str(tmp_path), mode="pseudo_labels", uncertain_threshold=0.7)
    _predict(writer, dataset=dataset)
    for item, conf in zip(dataset.items, confidence, strict=True):
        truth = item["true_labels"].numpy()
        expected = np.where((torch.maximum(conf, 1 - conf) < 0.7).numpy(), VOID, truth)
        assert (expected == VOID).sum() > (truth == VOID).sum()
        path = tmp_path / "SegmentationClass" / f"{item['id']}.png"
        with Image.open(path) as image:
            assert image.mode == "P"
            np.testing.assert_array_equal(np.asarray(image), expected)
    listing = (tmp_path / "ImageSets" / "Segmentation" / "pseudo.txt").read_text()
    assert listing.split() == [f"img{i}" for i in range(4)]
    top = ["ImageSets", "SegmentationClass", "run.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == top


def test_unwritable_output_dir_fails_at_setup(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    module = ContractModule()
    with pytest.raises(OSError, match="not writable") as info:
        _predict(SegmentationWriter(str(blocker / "out")), module=module)
    assert str(blocker / "out") in str(info.value)
    assert module.calls == 0  # failed before any prediction


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores chmod")
def test_read_only_output_dir_fails_at_setup(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            _predict(SegmentationWriter(str(tmp_path / "out")))
    finally:
        tmp_path.chmod(0o700)


def test_method_choice(tmp_path):
    dcsm, simonyan, crf = method_name("dcsm"), method_name("simonyan"), method_name("dcsm", "crf")
    assert default_method([dcsm, simonyan, crf]) == "dcsm+crf"
    assert default_method([simonyan, dcsm, crf]) == "simonyan"
    assert default_method([crf, dcsm]) == "dcsm+crf"
    # the strategy is read from the typed key, not from the text: "a+b" is no strategy "a"
    assert default_method([dcsm, method_name("dcsm", "crf5"), crf]) == "dcsm+crf5"

    dataset, _ = _predict(SegmentationWriter(str(tmp_path), method="simonyan"))
    for item in dataset.items:
        truth = item["true_labels"].numpy()
        mask = _read(tmp_path / "masks" / f"{item['id']}.png")
        np.testing.assert_array_equal(mask, np.where(truth == VOID, VOID, 1))
        assert (
            json.loads((tmp_path / "scores" / f"{item['id']}.json").read_text())["method"]
            == "simonyan"
        )

    with pytest.raises(ValueError, match="DenseCRF"):
        _predict(SegmentationWriter(str(tmp_path / "b"), method="simonyan+crf"))


def test_class_name_fallback_and_flags(tmp_path):
    writer = SegmentationWriter(str(tmp_path), write_heatmaps=False, write_overlays=False)
    _predict(writer, datamodule=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks", "run.json", "scores"]
    record = json.loads((tmp_path / "scores" / "img0.json").read_text())
    assert list(record["scores"]) == ["class_0", "class_1", "class_2"]

    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        _predict(SegmentationWriter(str(tmp_path / "b"), class_names=["a", "b"]))
    with pytest.raises(ValueError, match="mode"):
        SegmentationWriter(str(tmp_path), mode="labels")
    with pytest.raises(ValueError, match="uncertain_threshold"):
        SegmentationWriter(str(tmp_path), uncertain_threshold=1.5)


def test_callback_order_does_not_matter(tmp_path):
    """Writer listed before or after the segmentation: the same files."""
    for order in ("writer_first", "writer_last"):
        writer = SegmentationWriter(str(tmp_path / order))
        segmentation = ContractSegmentation(NAMES)
        callbacks = [writer, segmentation]
        _predict(writer, callbacks=callbacks if order == "writer_first" else callbacks[::-1])
        assert writer.written == 4
    first, last = (sorted((tmp_path / o).rglob("*.png")) for o in ("writer_first", "writer_last"))
    assert [p.relative_to(tmp_path / "writer_first") for p in first] == [
        p.relative_to(tmp_path / "writer_last") for p in last
    ]
    for a, b in zip(first, last, strict=True):
        np.testing.assert_array_equal(_read(a), _read(b))


class _BareImages(Dataset):
    """Batches with only what a foreign project has: image, mask, and integer ids."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> dict:
        mask = torch.zeros(SIZE, SIZE, dtype=torch.long)
        mask[: 4 + index, :5] = 1 + index % K
        candidates = torch.zeros(K, dtype=torch.bool)
        candidates[index % K] = True
        return {
            "image": torch.full((3, SIZE, SIZE), 0.5),
            "mask": mask,
            "id": index + 10,  # collated to a tensor of integers
            "probs": torch.full((K,), 0.5),
            "candidates": candidates,
            "maps": candidates[:, None, None] * torch.full((K, SIZE, SIZE), 0.7),
        }


def test_missing_optional_keys_and_integer_ids(tmp_path):
    writer = SegmentationWriter(str(tmp_path))
    _predict(writer, dataset=_BareImages())
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["10.png", "11.png", "12.png"]
    for index in range(3):
        mask = _read(tmp_path / "masks" / f"{index + 10}.png")
        assert mask.shape == (SIZE, SIZE)  # orig_size defaults to the image size, no padding
        assert (mask[: 4 + index, :5] == 1 + index % K).all() and (mask[:, 5:] == 0).all()
        overlay = _read(tmp_path / "overlays" / f"{index + 10}.png")
        # rgb recovered from the normalised image: 0.5 * std + mean, in 0-255
        expected = np.round((0.5 * np.array([0.229, 0.224, 0.225]) + [0.485, 0.456, 0.406]) * 255)
        np.testing.assert_array_equal(overlay[-1, -1], expected)


def test_writer_without_segmentation_says_what_to_add(tmp_path):
    writer = SegmentationWriter(str(tmp_path))
    with pytest.raises(ValueError, match="add SaliencySegmentation"):
        _predict(writer, callbacks=[writer])


def test_helpers():
    valid = torch.zeros(12, 12, dtype=torch.bool)
    valid[:12, :7] = True
    sizes = torch.tensor([[5, 3]])
    assert letterbox_extents(valid[None], sizes, 12).tolist() == [[12, 7]]
    assert letterbox_extents(None, sizes, 12).tolist() == [[12, 7]]
    labels = torch.tensor([[1, 2], [3, 0]])
    maps = torch.tensor([[[0.9, 0.6], [0.3, 0.02]]])  # winning .9 .6 .7 .98
    out = uncertain_to_void(labels, maps, 0.65)
    assert out.tolist() == [[1, VOID], [3, 0]]
    assert uncertain_to_void(labels, maps, 0.5).tolist() == labels.tolist()


def test_ids_with_folders_mirror_them_and_resume(tmp_path):
    dataset = ContractImages()
    for index, item in enumerate(dataset.items):
        item["id"] = f"sub/dir{index % 2}/{item['id']}"
    _predict(SegmentationWriter(str(tmp_path)), dataset)
    for item in dataset.items:
        np.testing.assert_array_equal(
            _read(tmp_path / "masks" / f"{item['id']}.png"), item["true_labels"].numpy()
        )
        assert (tmp_path / "overlays" / f"{item['id']}.png").is_file()
    writer = SegmentationWriter(str(tmp_path), mode="predictions")
    assert writer.done_ids() == {item["id"] for item in dataset.items}
    _predict(writer, dataset)
    assert (writer.written, writer.skipped) == (0, len(dataset.items))
    pseudo = SegmentationWriter(str(tmp_path / "pseudo"), mode="pseudo_labels")
    _predict(pseudo, dataset)
    listed = (tmp_path / "pseudo" / "ImageSets" / "Segmentation" / "pseudo.txt").read_text()
    assert sorted(listed.split()) == sorted(item["id"] for item in dataset.items)


@pytest.mark.parametrize("bad", ["../x", "/abs/x", "a/../x", "a//x", "a\\x", "", ".", "a/"])
def test_ids_that_would_leave_the_output_dir_are_refused(tmp_path, bad):
    dataset = ContractImages()
    dataset.items[0]["id"] = bad
    with pytest.raises(ValueError, match="must be a relative path"):
        _predict(SegmentationWriter(str(tmp_path / "out")), dataset)
    assert not list((tmp_path / "out").rglob("*.png"))
    assert check_id("cats/img_1") == "cats/img_1"
