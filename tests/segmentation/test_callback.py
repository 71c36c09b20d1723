"""SaliencySegmentation on someone else's module with tuple batches, against a hand computation."""

from __future__ import annotations

from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dcsm_lightning.data.adapter import BatchAdapter
from dcsm_lightning.metrics import segmentation_iou
from dcsm_lightning.saliency import create_saliency, select_candidates
from dcsm_lightning.segmentation.callback import SaliencySegmentation
from dcsm_lightning.segmentation.labels import labels_from_maps

K = 5


class Foreign(pl.LightningModule):
    """Not ours: forward gives B x K logits; batches are tuples (image, labels, mask)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, K, 1)
        with torch.no_grad():  # some classes above 0.5, some below
            self.head.bias.copy_(torch.tensor([1.0, -0.03, 0.04, -1.0, -2.0]))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image)).mean(dim=(2, 3))

    def validation_step(self, batch, batch_idx) -> None:
        pass


def _data() -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    image = torch.randn(6, 3, 16, 16, generator=g)
    labels = (torch.rand(6, K, generator=g) > 0.5).float()
    mask = torch.randint(0, K + 1, (6, 16, 16), generator=g)
    return TensorDataset(image, labels, mask)


def test_foreign_module_masks_and_miou_equal_a_hand_computation() -> None:
    model = Foreign()
    segmentation = SaliencySegmentation(
        ["simonyan", create_saliency("layer_gradient", layers=["features.1"])],
        class_names=["a", "b", "c", "d", "e"],
        batch_adapter=BatchAdapter(image=0, labels=1, mask=2),
        log_panels=False,
    )
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[segmentation]
    )
    logged = trainer.validate(model, DataLoader(_data(), batch_size=4), verbose=False)[0]
    results = segmentation.results["val"]
    assert list(results) == ["simonyan", "layer_gradient"]
    image, labels, mask = _data().tensors
    for strategy in segmentation.strategies:
        with torch.no_grad():
            probs = torch.sigmoid(model(image))
        cand = select_candidates(probs)  # score > 0.5, topped up to 3
        assert ((probs > 0.5).sum(1) < 3).any() and (cand.sum(1) < K).all()  # top-up matters
        maps = torch.cat([strategy(model, image[i : i + 4], cand[i : i + 4]) for i in (0, 4)])
        assert maps.amax() > 0  # the comparison is not on empty maps
        pred = labels_from_maps(maps, cand)
        per_class = segmentation_iou(pred, mask, K + 1, per_class=True)
        got = torch.tensor(results[strategy.name]["per_class"])
        torch.testing.assert_close(got, per_class, equal_nan=True)
        assert results[strategy.name]["miou"] == pytest.approx(float(per_class.nanmean()))
        assert logged[f"val/miou/{strategy.name}"] == pytest.approx(float(per_class.nanmean()))
    assert segmentation.last_output.maps["simonyan"].shape == (2, K, 16, 16)


def test_class_names_come_from_the_module_or_datamodule_it_attaches_to() -> None:
    alone = SaliencySegmentation("dcsm")
    with pytest.raises(ValueError, match="has no class names"):
        _ = alone.label_names
    alone.attach(Foreign(), SimpleNamespace(class_names=["x", "y", "z", "u", "v"]))
    assert alone.class_names == ["x", "y", "z", "u", "v"]  # Foreign has none: the data's
    module = SimpleNamespace(class_names=["cat", "dog"])
    named = SaliencySegmentation("dcsm")
    named.attach(module, SimpleNamespace(class_names=["other", "names"]))
    assert named.label_names == ["background", "cat", "dog"]  # the module's first
    given = SaliencySegmentation("dcsm", class_names=["a", "b"])
    given.attach(module)
    assert given.class_names == ["a", "b"]  # given names are kept
    counted = SaliencySegmentation("dcsm", num_classes=2)
    counted.attach(Foreign())
    assert counted.class_names == ["class_0", "class_1"]


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="2 class_names but num_classes=3"):
        SaliencySegmentation("dcsm", class_names=["a", "b"], num_classes=3)
    with pytest.raises(ValueError, match="distinct names"):
        SaliencySegmentation(["dcsm", "dcsm"], num_classes=2)
    with pytest.raises(ValueError, match="candidates"):
        SaliencySegmentation("dcsm", num_classes=2, candidates="tags")
    assert SaliencySegmentation("dcsm", num_classes=2).label_names == [
        "background",
        "class_0",
        "class_1",
    ]


def test_validate_logs_the_labelled_grid_to_tensorboard(tmp_path, monkeypatch) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dcsm_lightning.segmentation import callback as callback_module

    drawn, original = [], callback_module.log_figure

    def recording(logger, tag, figure, step):
        drawn.append(figure)
        return original(logger, tag, figure, step)

    monkeypatch.setattr(callback_module, "log_figure", recording)
    segmentation = SaliencySegmentation(
        "simonyan", class_names=["a", "b", "c", "d", "e"],
        batch_adapter=BatchAdapter(image=0, labels=1, mask=2),
    )  # fmt: skip
    logger = TensorBoardLogger(str(tmp_path), name="tb", version=0)
    trainer = pl.Trainer(
        accelerator="cpu", logger=logger, enable_progress_bar=False, callbacks=[segmentation]
    )
    trainer.validate(Foreign(), DataLoader(_data(), batch_size=3), verbose=False)
    (figure,) = drawn  # one grid per validation epoch, rows gathered over two batches of 3
    titles = [ax.get_title() for ax in figure.axes[:4]]
    assert titles == ["image", "ground truth", "simonyan map on image", "simonyan"]
    assert [ax.get_ylabel() for ax in figure.axes[:16:4]] == ["0_0", "0_1", "0_2", "1_0"]
    logger.experiment.flush()
    accumulator = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    accumulator.Reload()
    (image,) = accumulator.Images("val/grid")
    assert image.width == int(figure.get_size_inches()[0] * figure.dpi)


class _CountingSegmentation(SaliencySegmentation):
    """Counts the batches it has segmented."""

    segmented = 0

    def segment(self, *args, **kwargs):
        out = super().segment(*args, **kwargs)
        self.segmented += 1
        return out


class _RecordingBar(TQDMProgressBar):
    """At each tick: (the bar's count, batches segmented so far)."""

    def __init__(self, segmentation: _CountingSegmentation) -> None:
        super().__init__()
        self.segmentation = segmentation
        self.ticks: list[tuple[int, int]] = []

    def on_validation_batch_end(self, trainer, pl_module, *args, **kwargs):
        super().on_validation_batch_end(trainer, pl_module, *args, **kwargs)
        self.ticks.append((self.val_progress_bar.n, self.segmentation.segmented))


def test_a_foreign_module_bar_ticks_after_the_masks_even_when_listed_first() -> None:
    segmentation = _CountingSegmentation(
        "simonyan", class_names=list("abcde"), log_panels=False,
        batch_adapter=BatchAdapter(image=0, labels=1, mask=2),
    )  # fmt: skip
    bar = _RecordingBar(segmentation)
    trainer = pl.Trainer(accelerator="cpu", logger=False, callbacks=[bar, segmentation])
    trainer.validate(Foreign(), DataLoader(_data(), batch_size=4), verbose=False)
    assert bar.ticks == [(1, 1), (2, 2)]  # 6 images: two batches, each masked before its tick
