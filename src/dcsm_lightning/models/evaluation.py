"""Run several saliency strategies on one batch and keep one mIoU metric per method."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import nn

from dcsm_lightning.metrics import SegmentationIoU
from dcsm_lightning.saliency import SaliencyStrategy
from dcsm_lightning.segment import labels_from_maps
from dcsm_lightning.visualize import log_panels, panel_grid


class SegmentationEvaluator(nn.Module):
    """Maps, masks and per-method mIoU for a list of named saliency strategies.

    A "method" is a strategy name (``dcsm``) or a post-processed variant added by a callback
    (``dcsm+crf``). One :class:`~dcsm_lightning.metrics.SegmentationIoU` per (stage, method)
    accumulates over the whole split; under DDP it is synced when computed.

    Args:
        strategies: the saliency strategies; their ``name`` attributes must differ.
        class_names: the K foreground class names (label id k + 1).
        log_panels: log an image / map / mask grid of the first batch each epoch.
    """

    def __init__(
        self, strategies: list[SaliencyStrategy], class_names: list[str], log_panels: bool
    ) -> None:
        super().__init__()
        names = [s.name for s in strategies]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(
                f"saliency strategies need distinct names; {duplicated} is used twice "
                "(set init_args.name in the config)"
            )
        self.strategies = list(strategies)
        self.label_names = ["background", *class_names]
        self.log_panels = log_panels
        self.metrics = nn.ModuleDict()
        #: stage -> method -> {"miou": float, "per_class": list[float]} of the last finished epoch.
        self.results: dict[str, dict[str, dict[str, Any]]] = {}
        self._panel_batch: dict[str, Any] | None = None

    def segment(
        self, model: nn.Module, batch: dict[str, Any], candidates: torch.Tensor
    ) -> dict[str, Any]:
        """Maps B x K x H x W per strategy and their label maps B x H x W (no CRF)."""
        # Each strategy turns autograd back on itself (Lightning evaluates under inference mode).
        maps = {s.name: s(model, batch["image"], candidates) for s in self.strategies}
        valid = batch.get("valid")
        masks = {name: labels_from_maps(m, candidates, valid) for name, m in maps.items()}
        return {"candidates": candidates, "maps": maps, "masks": masks}

    def update(
        self,
        model: LightningModule,
        stage: str,
        outputs: Any,
        batch: dict[str, Any],
        batch_idx: int,
    ) -> None:
        """Accumulate every ``outputs["masks"]`` entry against ``batch["mask"]``."""
        if not isinstance(outputs, dict) or "masks" not in outputs or "mask" not in batch:
            return
        for method, pred in outputs["masks"].items():
            key = f"{stage}/{method}"
            if key not in self.metrics:
                self.metrics[key] = SegmentationIoU(len(self.label_names)).to(model.device)
            self.metrics[key].update(pred, batch["mask"])
        if batch_idx == 0 and self.log_panels and stage == "val" and outputs.get("maps"):
            first = next(iter(outputs["maps"]))  # the first strategy's (or network's) maps
            method = f"{first}+crf" if f"{first}+crf" in outputs["masks"] else first
            self._panel_batch = {
                "rgb": batch["rgb"].cpu(),
                "maps": outputs["maps"][first].cpu(),
                "masks": outputs["masks"][method].cpu(),
                "candidates": outputs["candidates"].cpu(),
            }

    def log_epoch(self, model: LightningModule, stage: str) -> None:
        """Compute, log (``<stage>/miou/<method>``, ``<stage>/iou/<method>/<class>``) and reset."""
        stage_results = {}
        for key, metric in self.metrics.items():
            metric_stage, method = key.split("/", 1)
            if metric_stage != stage or not metric.update_called:
                continue
            out = metric.compute()
            metric.reset()
            model.log(f"{stage}/miou/{method}", out["miou"])
            for name, iou in zip(self.label_names, out["per_class"], strict=True):
                if not torch.isnan(iou):
                    model.log(f"{stage}/iou/{method}/{name}", iou)
            stage_results[method] = {
                "miou": float(out["miou"]),
                "per_class": out["per_class"].tolist(),
            }
        if stage_results:
            self.results[stage] = stage_results
        if (
            self._panel_batch is not None
            and model.logger is not None
            and model.trainer.is_global_zero
        ):
            log_panels(
                model.logger, f"{stage}/panels", panel_grid(**self._panel_batch), model.global_step
            )
        self._panel_batch = None


class EvaluationSteps:
    """LightningModule mixin: validation / test / predict steps and the evaluator's hooks.

    The module sets ``self.evaluator`` (a :class:`SegmentationEvaluator`) and implements
    ``_evaluation_step(batch, stage) -> dict`` (stage ``"val"``, ``"test"`` or ``"predict"``)
    returning the step outputs of ``docs/contracts.md``; every ``masks`` entry is then counted
    against ``batch["mask"]`` and logged per epoch as ``<stage>/miou/<method>``.
    """

    evaluator: SegmentationEvaluator

    def _evaluation_step(self, batch: dict[str, Any], stage: str) -> dict[str, Any]:
        raise NotImplementedError

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluation_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluation_step(batch, "test")

    def predict_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        return self._evaluation_step(batch, "predict")

    def on_validation_batch_end(
        self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        # Callbacks (e.g. DenseCRF) run this hook before the module, so their masks are here too.
        self.evaluator.update(self, "val", outputs, batch, batch_idx)  # type: ignore[arg-type]

    def on_test_batch_end(
        self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self.evaluator.update(self, "test", outputs, batch, batch_idx)  # type: ignore[arg-type]

    def on_validation_epoch_end(self) -> None:
        self.evaluator.log_epoch(self, "val")  # type: ignore[arg-type]

    def on_test_epoch_end(self) -> None:
        self.evaluator.log_epoch(self, "test")  # type: ignore[arg-type]
