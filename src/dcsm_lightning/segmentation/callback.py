"""``SaliencySegmentation``: the evaluation flow as a Lightning callback.

It runs :func:`~dcsm_lightning.segmentation.flow.segment_batch` on each validation / test /
predict batch (read through a :class:`~dcsm_lightning.data.adapter.BatchAdapter`) with the
refiners of the trainer (e.g. :class:`~dcsm_lightning.crf.DenseCRF`), feeds one
:class:`~dcsm_lightning.metrics.SegmentationIoU` per method and holds what it produces as
data: :attr:`SaliencySegmentation.last_output` (read by
:class:`~dcsm_lightning.SegmentationWriter`) and :attr:`SaliencySegmentation.results`
(read by :class:`~dcsm_lightning.ComparisonReport`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partialmethod
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from dcsm_lightning.data.adapter import BatchAdapter, as_adapter
from dcsm_lightning.saliency import SaliencyStrategy, as_saliency, saliency_spec_type
from dcsm_lightning.saliency.pooling import Pool
from dcsm_lightning.segmentation.batches import BatchOutputs
from dcsm_lightning.segmentation.distributed import PaddingFilter, counted
from dcsm_lightning.segmentation.flow import CandidateRule, MapSource, SaliencyMaps
from dcsm_lightning.segmentation.method_metrics import STAGE_PREFIX, MethodMetrics
from dcsm_lightning.segmentation.methods import Method, check_distinct
from dcsm_lightning.segmentation.output import MaskRefiner, SegmentationOutput
from dcsm_lightning.segmentation.panels import GridCollector, log_figure
from dcsm_lightning.segmentation.segmenting import BatchSegmenting

__all__ = ["MaskRefiner", "SaliencySegmentation", "SegmentationOutput", "find_segmentation"]


#: A strategy as a config gives it: an instance, a registry name (``dcsm``) or
#: ``{class_path: <registry name>, init_args: {...}}``; entry-point plugins included.
SaliencySpec = saliency_spec_type()
#: rows of the labelled grid logged per validation epoch (the first images of the val set).
GRID_ROWS = 4


class SaliencySegmentation(BatchSegmenting, Callback):
    """Turn any LightningModule whose forward gives class scores into masks and mIoU.

    As input it takes each evaluation batch (through ``batch_adapter``) and the module's
    ``forward(image)``: scores (B, K) or a score map (B, K, h, w) pooled by ``pool``, taken
    as logits. It
    produces a :class:`SegmentationOutput` per batch and, for validate / test, one mIoU per
    method (``<name>``, ``<name>+<refiner name>``), logged as ``<stage>/miou/<method>`` and
    ``<stage>/iou/<method>/<label>`` and kept in :attr:`results`. Our modules segment in
    their steps (:meth:`segment_step`, with their forward); any other module, after its step.

    Args:
        saliency: one strategy or a list (names must differ): instances, registry names
            (``"dcsm"``) or ``{class_path: <name>, init_args: {...}}``; None (default): the
            paper's DCSM with its defaults.
        class_names: the K foreground class names (label id k + 1). None (default): the
            module's ``class_names`` when the callback attaches (``setup``; our modules have
            them from the datamodule), else the datamodule's, else ``num_classes``.
        num_classes: K, when no names are given or found (names become ``class_<k>``).
        batch_adapter: a :class:`~dcsm_lightning.data.adapter.BatchAdapter` or a callable
            returning a dict with our batch keys; default reads ``docs/contracts.md`` batches.
        candidates: ``"predicted"`` (score > ``candidate_threshold``, topped up to
            ``min_candidates``) or ``"labels"`` (the batch's image tags).
        candidate_threshold: probability above which a class is a candidate.
        min_candidates: top-up size N: when fewer classes are above the threshold, the
            highest-scoring others are added up to N (the paper's N = 3 on VOC's K = 20).
            The top-up never makes every class a candidate: it is off when K <= N (K = 3,
            N = 3 would give every class a map on every image); 0 disables it.
        pool: how a score map (B, K, h, w) becomes scores (B, K) for the probabilities (the
            candidates and ``scores/*.json``): ``"max"``, ``"avg"`` or a callable; None
            (default): the module's own ``score_pool`` attribute when it declares one (our
            ``MultiLabelFCN``: ``"max"``), else ``"max"``. Use the pooling the model was
            trained with, or the probabilities are ones the model never produces.
        segment_in_fit: also segment in the validation epochs of ``fit`` (slow); by default
            only ``validate`` / ``test`` / ``predict`` do.
        log_panels: log the labelled grid of the first validation images to TensorBoard
            (``<stage>/grid``: image | ground truth | map on image | mask | + CRF, see
            :func:`~dcsm_lightning.outputs.grid.grid_figure`).

    Raises:
        ValueError: duplicate strategy names, a bad ``candidates`` value or
            ``min_candidates``, ``class_names`` and ``num_classes`` that disagree; when it
            attaches, no class names anywhere.
    """

    def __init__(
        self,
        saliency: SaliencySpec | list[SaliencySpec] | None = None,
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
        batch_adapter: BatchAdapter | Callable[[Any], Mapping[str, Any]] | None = None,
        candidates: Literal["predicted", "labels"] = "predicted",
        candidate_threshold: float = 0.5,
        min_candidates: int = 3,
        pool: Pool | None = None,
        segment_in_fit: bool = False,
        log_panels: bool = True,
    ) -> None:
        super().__init__()
        saliency = "dcsm" if saliency is None else saliency
        specs = saliency if isinstance(saliency, (list, tuple)) else [saliency]
        self.strategies: list[SaliencyStrategy] = [as_saliency(spec) for spec in specs]
        check_distinct(
            [s.name for s in self.strategies], "saliency strategies",
            "set init_args.name in the config",
        )  # fmt: skip
        if class_names is not None and num_classes not in (None, len(class_names)):
            raise ValueError(f"{len(class_names)} class_names but num_classes={num_classes}")
        self._class_names = None if class_names is None else [str(n) for n in class_names]
        self.num_classes = num_classes
        self.batch_adapter = as_adapter(batch_adapter)
        #: what makes the maps (:func:`~dcsm_lightning.segmentation.flow.segment_batch`).
        self.source: MapSource = SaliencyMaps(
            self.strategies, CandidateRule(candidates, candidate_threshold, min_candidates),
            pool,
        )
        self.segment_in_fit = segment_in_fit
        self.log_panels = log_panels
        self.refiners: list[MaskRefiner] = []
        #: one mIoU per (stage, method), built when the callback attaches (``setup``).
        self.metrics: MethodMetrics | None = None
        #: stage (``"val"`` / ``"test"``) -> method -> ``{"miou": float, "per_class": list}``
        #: (K + 1 IoUs in [0, 1], background first, NaN if absent) of the last finished epoch.
        self.results: dict[str, dict[str, dict[str, Any]]] = {}
        #: the :class:`SegmentationOutput` of the last batch processed.
        self.last_output: SegmentationOutput | None = None
        #: each trainer batch's output, computed at the first request (step, hook or writer);
        #: a resuming writer sets ``outputs.finished`` to drop its finished ids first.
        self.outputs = BatchOutputs(self.batch_adapter)
        self._grid: GridCollector | None = None
        self._padding = PaddingFilter()

    # -- what it computes ---------------------------------------------------------------------

    @property
    def class_names(self) -> list[str]:
        """The K foreground class names (given, or found by :meth:`attach`).

        Raises:
            ValueError: none were given and the callback has not attached to a module.
        """
        if self._class_names is not None:
            return self._class_names
        if self.num_classes is None:
            raise ValueError(
                "SaliencySegmentation has no class names: give class_names (or num_classes), "
                "or attach it to a module that has class_names (attach(), or a trainer's setup)"
            )
        return [f"class_{k}" for k in range(self.num_classes)]

    def attach(self, pl_module: Any, datamodule: Any = None) -> None:
        """Take the class names from ``pl_module.class_names``, else ``datamodule.class_names``,
        when none were given (called by ``setup``; call it when using the callback outside a
        trainer without ``class_names``); none found leaves :attr:`class_names` to
        ``num_classes``."""
        found = (getattr(owner, "class_names", None) for owner in (pl_module, datamodule))
        names = self._class_names or next((n for n in found if n), None)
        self._class_names = None if names is None else [str(n) for n in names]

    @property
    def label_names(self) -> list[str]:
        """The K + 1 label names, ``"background"`` first."""
        return ["background", *self.class_names]

    @property
    def methods(self) -> list[Method]:
        """Every method evaluated: each map name followed by its refined variants."""
        return [
            Method(name, step)
            for name in self.map_names
            for step in (None, *(r.name for r in self.refiners))
        ]

    def use_candidates(self, source: Literal["predicted", "labels"]) -> None:
        """Take the candidates from ``source`` from now on (pseudo-labels: the image tags)."""
        if isinstance(self.source, SaliencyMaps):
            self.source.candidates = replace(self.source.candidates, source=source)

    # -- Lightning hooks ----------------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Take the class names from the module (:meth:`attach`), come before the progress
        bar (:meth:`ahead_of_the_progress_bar`), pick up the refiner callbacks of the trainer
        (e.g. ``DenseCRF``) and measure every method; let each strategy check the module
        (default layers) before the first batch."""
        self.attach(pl_module, getattr(trainer, "datamodule", None))
        self.ahead_of_the_progress_bar(trainer)
        if stage != "fit" or self.segment_in_fit:
            for strategy in self.strategies:
                strategy.setup(pl_module)
        self.refiners = [
            cb for cb in trainer.callbacks if cb is not self and isinstance(cb, MaskRefiner)
        ]
        check_distinct(
            [r.name for r in self.refiners], "refiners",
            'e.g. DenseCRF(name="crf5", settings=...) beside DenseCRF()',
        )  # fmt: skip
        self.metrics = MethodMetrics(self.label_names, self.methods)

    def _start(
        self, prefix: str | None, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        self.outputs.reset()
        self.results.pop(prefix, None)
        self.metrics.to(pl_module.device)
        stage_loaders = trainer.val_dataloaders if prefix == "val" else trainer.test_dataloaders
        self._padding.start(stage_loaders if prefix in ("val", "test") else None)

    on_validation_start = partialmethod(_start, "val")
    on_test_start = partialmethod(_start, "test")
    on_predict_start = partialmethod(_start, None)

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
        keep = None if out is None else self._padding.keep(dataloader_idx, len(out.batch))
        if out is None or out.batch.mask is None:
            return
        self.metrics.update(STAGE_PREFIX[stage], *counted(out.masks, out.batch.mask, keep))
        if dataloader_idx == 0 and self.log_panels and stage == "validate":
            if batch_idx == 0:
                refiner = self.refiners[0].name if self.refiners else None
                self._grid = GridCollector(GRID_ROWS, self.map_names[0], self.label_names, refiner)
            if self._grid is not None:
                self._grid.add(out)

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

    def _epoch_end(self, prefix: str, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stage_results = self.metrics.compute(prefix, self.methods, pl_module.log)
        if stage_results:
            self.results[prefix] = stage_results
        figure = self._grid.figure() if self._grid is not None else None
        if figure is not None and trainer.is_global_zero:
            log_figure(pl_module.logger, f"{prefix}/grid", figure, trainer.global_step)
        self._grid = None

    on_validation_epoch_end = partialmethod(_epoch_end, "val")
    on_test_epoch_end = partialmethod(_epoch_end, "test")


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
            "or give the model one (model.segmentation: {class_path: SaliencySegmentation, "
            "init_args: {saliency: [dcsm]}})"
        )
    return found[0]
