"""``BatchSegmenting``: how :class:`~dcsm_lightning.SaliencySegmentation` segments one trainer
batch, once, from wherever it is asked first: the module's step (our modules, with their
forward), a batch-end hook (any other module) or the writer."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ProgressBar
from torch import Tensor

from dcsm_lightning.data.adapter import SegmentationBatch
from dcsm_lightning.segmentation.batches import BatchOutputs
from dcsm_lightning.segmentation.flow import MapSource, segment_batch
from dcsm_lightning.segmentation.output import MaskRefiner, SegmentationOutput

__all__ = ["BatchSegmenting"]


class BatchSegmenting:
    """Mixin of :class:`~dcsm_lightning.SaliencySegmentation`: a trainer batch -> its
    :class:`SegmentationOutput` (:func:`~dcsm_lightning.segmentation.flow.segment_batch`
    with the callback's source and refiners), computed once per batch."""

    #: set by the callback: what makes the maps, the refiners, the per-batch outputs, the
    #: last output, and whether ``fit``'s validation segments
    source: MapSource
    refiners: list[MaskRefiner]
    outputs: BatchOutputs
    last_output: SegmentationOutput | None
    segment_in_fit: bool

    @property
    def map_names(self) -> list[str]:
        """The names of the maps :attr:`source` gives (the strategies')."""
        return self.source.names

    def segment(
        self,
        pl_module: pl.LightningModule,
        batch: SegmentationBatch,
        stage: str = "predict",
        trainer: pl.Trainer | None = None,
        scores: Tensor | None = None,
    ) -> SegmentationOutput:
        """Maps, masks (Eq. 7) and refined masks of one adapted batch
        (:func:`~dcsm_lightning.segmentation.flow.segment_batch` with this callback's source
        and refiners; ``scores``: the module's forward on ``batch.image``, if already run)."""
        return segment_batch(
            pl_module, batch, self.source, self.refiners, scores=scores, stage=stage,
            trainer=trainer,
        )  # fmt: skip

    def output_for(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
        stage: str = "predict",
        scores: Tensor | None = None,
    ) -> SegmentationOutput | None:
        """The :class:`SegmentationOutput` of a trainer batch, computed once per batch (with
        the module's forward ``scores`` when given); None when a resuming writer has finished
        every image of it (``predict``), whose output then holds only the unfinished ones."""

        def compute(view: SegmentationBatch, kept: Tensor | None) -> SegmentationOutput:
            return self.segment(pl_module, view, stage, trainer, kept)

        out = self.outputs.output(batch, batch_idx, dataloader_idx, stage, compute, scores)
        if out is not None:
            self.last_output = out
        return out

    def finished_batch(
        self,
        trainer: pl.Trainer | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
        stage: str = "predict",
    ) -> bool:
        """Whether a resuming writer has finished every image of this batch (nothing to do:
        the module's step skips even its forward)."""
        if not self._segments(trainer, stage):
            return False
        return self.outputs.view(batch, batch_idx, dataloader_idx, stage)[0] is None

    def segment_step(
        self,
        pl_module: pl.LightningModule,
        trainer: pl.Trainer | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
        stage: str = "predict",
        scores: Tensor | None = None,
    ) -> None:
        """Segment a batch from inside the module's step, reusing its forward ``scores``
        (B x K (x h x w) logits), so the progress bar ticks after the masks are done."""
        if self._segments(trainer, stage):
            self.output_for(trainer, pl_module, batch, batch_idx, dataloader_idx, stage, scores)

    def _segments(self, trainer: pl.Trainer | None, stage: str) -> bool:
        """Whether batches of ``stage`` in this run are segmented."""
        if trainer is None or trainer.sanity_checking or not self.map_names:
            return False
        return stage == "predict" or self.segment_in_fit or trainer.state.fn != "fit"

    def ahead_of_the_progress_bar(self, trainer: pl.Trainer) -> None:
        """Move this callback before the trainer's progress bar, so that for a module whose
        step does not segment (not one of ours) the batch-end hook that segments runs before
        the bar ticks. Lightning appends its default bar after ``Trainer(callbacks=[...])``;
        a bar given in that list before this callback would tick before the masks exist."""
        callbacks = trainer.callbacks
        bars = [i for i, cb in enumerate(callbacks) if isinstance(cb, ProgressBar)]
        mine = next(i for i, cb in enumerate(callbacks) if cb is self)
        if bars and bars[0] < mine:
            callbacks.insert(bars[0], callbacks.pop(mine))
