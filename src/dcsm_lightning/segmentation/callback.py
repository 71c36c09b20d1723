"""``SaliencySegmentation``: any classifier -> saliency maps -> masks -> per-method mIoU.

The one evaluation flow of the library. The callback reads each validation / test / predict
batch through a :class:`~dcsm_lightning.data.adapter.BatchAdapter`, asks the module for class
scores (``pl_module(image)``: B x K, or a B x K x h x w score map, max-pooled), picks the
candidates, runs every saliency strategy, turns the maps into masks (Eq. 7), lets every
refiner in the trainer (e.g. :class:`~dcsm_lightning.crf.DenseCRF`) add its masks, and feeds
one :class:`~dcsm_lightning.metrics.SegmentationIoU` per method
(:class:`~dcsm_lightning.segmentation.method_metrics.MethodMetrics`). What it produces is held as
data: :attr:`SaliencySegmentation.last_output` (the batch's :class:`SegmentationOutput`, which
:class:`~dcsm_lightning.SegmentationWriter` reads) and
:attr:`SaliencySegmentation.results` (per-method mIoU, which
:class:`~dcsm_lightning.ComparisonReport` reads).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partialmethod
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from dcsm_lightning.data.adapter import BatchAdapter, SegmentationBatch, as_adapter
from dcsm_lightning.saliency import SaliencyStrategy, as_saliency, saliency_spec_type
from dcsm_lightning.segmentation.batches import BatchOutputs
from dcsm_lightning.segmentation.flow import CandidateRule, MapSource, SaliencyMaps, segment_batch
from dcsm_lightning.segmentation.method_metrics import STAGE_PREFIX, MethodMetrics
from dcsm_lightning.segmentation.methods import Method
from dcsm_lightning.segmentation.output import MaskRefiner, SegmentationOutput
from dcsm_lightning.segmentation.panels import log_panels, panel_grid

__all__ = ["MaskRefiner", "SaliencySegmentation", "SegmentationOutput", "find_segmentation"]


#: A strategy as a config gives it: an instance, a registry name (``dcsm``) or
#: ``{class_path: <registry name>, init_args: {...}}``; entry-point plugins included.
SaliencySpec = saliency_spec_type()


class SaliencySegmentation(Callback):
    """Turn any LightningModule whose forward gives class scores into masks and mIoU.

    As input it takes each evaluation batch (through ``batch_adapter``) and the module's
    ``forward(image)``: scores (B, K) or a score map (B, K, h, w), taken as logits. It
    produces a :class:`SegmentationOutput` per batch and, for validate / test, one mIoU per
    method over the split, logged as ``<stage>/miou/<method>`` and
    ``<stage>/iou/<method>/<label>`` (stage ``val`` or ``test``) and kept in :attr:`results`.
    Methods are the strategies' names and, for each refiner callback in the trainer (e.g.
    ``DenseCRF``), ``<name>+<step>``. The order of the trainer's callbacks does not matter:
    whichever asks first for a batch's output (this callback's hook, the writer) computes it.

    Args:
        saliency: one strategy or a list (names must differ): instances, registry names
            (``"dcsm"``) or ``{class_path: <name>, init_args: {...}}``.
        class_names: the K foreground class names (label id k + 1); or give ``num_classes``.
        num_classes: K, when ``class_names`` is not given (names become ``class_<k>``).
        batch_adapter: a :class:`~dcsm_lightning.data.adapter.BatchAdapter` or a callable
            returning a dict with our batch keys; default reads ``docs/contracts.md`` batches.
        candidates: ``"predicted"`` (score > ``candidate_threshold``, topped up to
            ``min_candidates``) or ``"labels"`` (the batch's image tags).
        candidate_threshold: probability above which a class is a candidate.
        min_candidates: top-up size N (0 disables it).
        segment_in_fit: also segment in the validation epochs of ``fit`` (slow); by default
            only ``validate`` / ``test`` / ``predict`` do.
        log_panels: log an image / map / mask grid of the first validation batch.

    Raises:
        ValueError: duplicate strategy names, no classes, or a bad ``candidates`` value.
    """

    def __init__(
        self,
        saliency: SaliencySpec | list[SaliencySpec],
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
        batch_adapter: BatchAdapter | Callable[[Any], Mapping[str, Any]] | None = None,
        candidates: Literal["predicted", "labels"] = "predicted",
        candidate_threshold: float = 0.5,
        min_candidates: int = 3,
        segment_in_fit: bool = False,
        log_panels: bool = True,
    ) -> None:
        super().__init__()
        specs = saliency if isinstance(saliency, (list, tuple)) else [saliency]
        self.strategies: list[SaliencyStrategy] = [as_saliency(spec) for spec in specs]
        _refuse_duplicates(
            [s.name for s in self.strategies], "saliency strategies",
            "set init_args.name in the config",
        )  # fmt: skip
        if class_names is None:
            if num_classes is None:
                raise ValueError("SaliencySegmentation needs class_names or num_classes")
            class_names = [f"class_{k}" for k in range(num_classes)]
        if num_classes is not None and num_classes != len(class_names):
            raise ValueError(f"{len(class_names)} class_names but num_classes={num_classes}")
        self.class_names = [str(n) for n in class_names]
        self.batch_adapter = as_adapter(batch_adapter)
        self.candidates = candidates
        self.candidate_threshold = candidate_threshold
        self.min_candidates = min_candidates
        #: what makes the maps (:func:`~dcsm_lightning.segmentation.flow.segment_batch`).
        self.source: MapSource = SaliencyMaps(
            self.strategies, CandidateRule(candidates, candidate_threshold, min_candidates)
        )
        self.segment_in_fit = segment_in_fit
        self.log_panels = log_panels
        self.refiners: list[MaskRefiner] = []
        self.metrics = MethodMetrics(self.label_names, self.methods)
        #: stage (``"val"`` / ``"test"``) -> method -> ``{"miou": float, "per_class": list}``
        #: (K + 1 IoUs in [0, 1], background first, NaN if absent) of the last finished epoch.
        self.results: dict[str, dict[str, dict[str, Any]]] = {}
        #: the :class:`SegmentationOutput` of the last batch processed.
        self.last_output: SegmentationOutput | None = None
        #: each trainer batch's output, computed at the first request (step, hook or writer);
        #: a resuming writer sets ``outputs.finished`` to drop its finished ids first.
        self.outputs = BatchOutputs(self.batch_adapter)
        self._panel: dict[str, Tensor] | None = None

    # -- what it computes ---------------------------------------------------------------------

    @property
    def label_names(self) -> list[str]:
        """The K + 1 label names, ``"background"`` first."""
        return ["background", *self.class_names]

    @property
    def map_names(self) -> list[str]:
        """The names of the maps :attr:`source` gives (the strategies')."""
        return self.source.names

    @property
    def methods(self) -> list[Method]:
        """Every method evaluated: each map name followed by its refined variants."""
        return [
            Method(name, step)
            for name in self.map_names
            for step in (None, *(r.name for r in self.refiners))
        ]

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

    # -- Lightning hooks ----------------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Pick up the refiner callbacks of the trainer (e.g. ``DenseCRF``) and their metrics."""
        self.refiners = [
            cb for cb in trainer.callbacks if cb is not self and isinstance(cb, MaskRefiner)
        ]
        _refuse_duplicates(
            [r.name for r in self.refiners], "refiners",
            'e.g. DenseCRF(name="crf5", settings=...) beside DenseCRF()',
        )  # fmt: skip
        for method in self.methods:
            self.metrics.add(method)

    def _segments(self, trainer: pl.Trainer | None, stage: str) -> bool:
        """Whether batches of ``stage`` in this run are segmented."""
        if trainer is None or trainer.sanity_checking or not self.map_names:
            return False
        return stage == "predict" or self.segment_in_fit or trainer.state.fn != "fit"

    def _start(self, pl_module: pl.LightningModule, prefix: str | None = None) -> None:
        self.outputs.reset()
        self.results.pop(prefix, None)
        self.metrics.to(pl_module.device)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(pl_module, "val")

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(pl_module, "test")

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(pl_module)

    def _update(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        stage: str,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if not self._segments(trainer, stage):
            return
        out = self.output_for(trainer, pl_module, batch, batch_idx, dataloader_idx, stage)
        if out is None or out.batch.mask is None:
            return
        self.metrics.update(STAGE_PREFIX[stage], out.masks, out.batch.mask)
        if batch_idx == 0 and dataloader_idx == 0 and self.log_panels and stage == "validate":
            first = self.map_names[0]
            refined = [Method(first, r.name) for r in self.refiners]
            shown = refined[0] if refined and refined[0] in out.masks else first
            self._panel = {
                "rgb": out.batch.rgb.cpu(),
                "maps": out.maps[first].cpu(),
                "masks": out.masks[shown].cpu(),
                "candidates": out.candidates.cpu(),
            }

    def _batch_end(
        self,
        stage: str,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if stage == "predict":
            if self._segments(trainer, stage):
                self.output_for(trainer, pl_module, batch, batch_idx, dataloader_idx, stage)
        else:
            self._update(trainer, pl_module, stage, batch, batch_idx, dataloader_idx)

    #: Lightning hooks ``on_{validation,test,predict}_batch_end``: for a module whose step did
    #: not segment the batch (not one of ours), segment it now (the step's ``outputs`` are not
    #: read); for validation and test, update the metrics.
    on_validation_batch_end = partialmethod(_batch_end, "validate")
    on_test_batch_end = partialmethod(_batch_end, "test")
    on_predict_batch_end = partialmethod(_batch_end, "predict")

    def _epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prefix: str) -> None:
        stage_results = self.metrics.compute(prefix, self.methods, pl_module.log)
        if stage_results:
            self.results[prefix] = stage_results
        if self._panel is not None and trainer.is_global_zero:
            grid = panel_grid(**self._panel)
            log_panels(pl_module.logger, f"{prefix}/panels", grid, trainer.global_step)
        self._panel = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_end(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_end(trainer, pl_module, "test")


def _refuse_duplicates(names: list[str], what: str, hint: str) -> None:
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"{what} need distinct names; {duplicated} is used twice ({hint})")


def find_segmentation(trainer: pl.Trainer, needed_by: str) -> SaliencySegmentation:
    """The one :class:`SaliencySegmentation` among the trainer's callbacks.

    Raises:
        ValueError: there is none, or more than one (``needed_by`` names the asker).
    """
    found = [cb for cb in trainer.callbacks if isinstance(cb, SaliencySegmentation)]
    if len(found) != 1:
        raise ValueError(
            f"{needed_by} reads the results of one SaliencySegmentation callback, found "
            f"{len(found)}: add SaliencySegmentation(saliency=[...]) to Trainer(callbacks=[...]) "
            "or give MultiLabelFCN a `saliency` strategy"
        )
    return found[0]
