"""The flow inside predict / validate: one classifier forward per batch, resume skips before
it computes, the progress bar ticks only after a batch's masks exist."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from torch.utils.data import DataLoader

from dcsm_lightning.crf import DenseCRF
from dcsm_lightning.data.classes import SYNTHETIC_CLASSES
from dcsm_lightning.data.samples import collate_batch, prepare_sample
from dcsm_lightning.data.synthetic import SyntheticScenes
from dcsm_lightning.models import MultiLabelFCN
from dcsm_lightning.outputs.writer import SegmentationWriter
from dcsm_lightning.saliency import Simonyan
from dcsm_lightning.segmentation.callback import SaliencySegmentation

SIZE = 32
COUNT = 6  # batches of 4 and 2


class CountingSimonyan(Simonyan):
    """Simonyan maps that remember every image they were computed for (by its pixels)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.images: list[torch.Tensor] = []
        self.batches = 0

    def __call__(self, model, image, candidates=None):
        self.images.extend(image.detach().cpu())
        self.batches += 1
        return super().__call__(model, image, candidates)


class CountingFCN(MultiLabelFCN):
    """Counts the images its forward sees outside the saliency strategies."""

    forwards = 0

    def _evaluation_step(self, batch, stage):
        type(self).forwards += len(batch["image"])
        return super()._evaluation_step(batch, stage)


def _samples() -> list[dict]:
    scenes = SyntheticScenes(COUNT, SIZE, seed=0, split="test")
    return [prepare_sample(scenes[i], SIZE) for i in range(COUNT)]


def _model(strategy: Simonyan) -> CountingFCN:
    torch.manual_seed(0)
    segmentation = SaliencySegmentation(strategy)
    return CountingFCN(
        num_classes=len(SYNTHETIC_CLASSES), backbone="vgg_small", segmentation=segmentation
    )


def _predict(model, out: Path, callbacks=(), progress=False) -> SegmentationWriter:
    writer = SegmentationWriter(str(out), class_names=list(SYNTHETIC_CLASSES))
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=progress,
        callbacks=[writer, DenseCRF(num_workers=0), *callbacks],
    )
    loader = DataLoader(_samples(), batch_size=4, collate_fn=collate_batch)
    trainer.predict(model, loader, return_predictions=False)
    return writer


def test_a_rerun_computes_nothing_for_finished_ids(tmp_path):
    strategy = CountingSimonyan()
    model = _model(strategy)
    _predict(model, tmp_path)
    assert len(strategy.images) == COUNT and CountingFCN.forwards == COUNT
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}

    # image 1 (batch 0) lost its scores (the marker written last); batch 1 is complete
    samples = _samples()
    marker = tmp_path / "scores" / f"{samples[1]['id']}.json"
    marker.unlink()
    strategy.images.clear()
    CountingFCN.forwards = 0
    writer = _predict(model, tmp_path)
    assert len(strategy.images) == 1  # image level: only the unfinished image got maps
    expected = collate_batch([samples[1]])["image"][0]
    torch.testing.assert_close(strategy.images[0], expected)
    assert CountingFCN.forwards == 4  # batch level: batch 1 not even classified
    assert (writer.written, writer.skipped) == (1, COUNT - 1)
    assert marker.is_file()
    for path, mtime in before.items():
        if path != marker:  # every other file untouched
            assert path.stat().st_mtime_ns == mtime, path

    # a lost heatmap makes its image unfinished too (the marker lists the candidates)
    heatmap = next((tmp_path / "heatmaps").glob(f"{samples[4]['id']}_*.png"))
    heatmap.unlink()
    strategy.images.clear()
    _predict(model, tmp_path)
    assert len(strategy.images) == 1 and heatmap.is_file()


class RecordingBar(TQDMProgressBar):
    """At each tick of the bar: (the bar's count, batches the strategy has made maps for)."""

    def __init__(self, strategy: CountingSimonyan) -> None:
        super().__init__()
        self.strategy = strategy
        self.ticks: list[tuple[int, int]] = []

    def _record(self, bar) -> None:
        self.ticks.append((bar.n, self.strategy.batches))

    def on_predict_batch_end(self, trainer, pl_module, *args, **kwargs):
        super().on_predict_batch_end(trainer, pl_module, *args, **kwargs)
        self._record(self.predict_progress_bar)

    def on_validation_batch_end(self, trainer, pl_module, *args, **kwargs):
        super().on_validation_batch_end(trainer, pl_module, *args, **kwargs)
        self._record(self.val_progress_bar)


def test_the_progress_bar_counts_batches_whose_masks_are_done(tmp_path):
    strategy = CountingSimonyan()
    bar = RecordingBar(strategy)
    trainer = pl.Trainer(accelerator="cpu", logger=False, callbacks=[bar])
    # as the command line does: the writer and the CRF come after the progress bar
    writer = SegmentationWriter(str(tmp_path), class_names=list(SYNTHETIC_CLASSES))
    trainer.callbacks.extend([writer, DenseCRF(num_workers=0)])
    loader = DataLoader(_samples(), batch_size=4, collate_fn=collate_batch)
    model = _model(strategy)
    trainer.predict(model, loader, return_predictions=False)
    assert bar.ticks == [(1, 1), (2, 2)]
    bar.ticks.clear()
    trainer.validate(model, loader, verbose=False)
    assert bar.ticks == [(1, 3), (2, 4)]


class ForwardCounter(MultiLabelFCN):
    """Counts forwards run without autograd: the classify passes (saliency runs with it on)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.plain_forwards: list[int] = []

    def forward(self, image):
        if not torch.is_grad_enabled():
            self.plain_forwards.append(len(image))
        return super().forward(image)


def test_one_classifier_forward_per_batch(tmp_path):
    torch.manual_seed(0)
    model = ForwardCounter(
        num_classes=len(SYNTHETIC_CLASSES), backbone="vgg_small",
        segmentation=SaliencySegmentation(Simonyan()),
    )  # fmt: skip
    _predict(model, tmp_path)
    assert model.plain_forwards == [4, 2]
    model.plain_forwards.clear()
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    loader = DataLoader(_samples(), batch_size=4, collate_fn=collate_batch)
    trainer.validate(model, loader, verbose=False)
    assert model.plain_forwards == [4, 2]
    assert model.segmentation.results["val"]["simonyan"]["miou"] >= 0
