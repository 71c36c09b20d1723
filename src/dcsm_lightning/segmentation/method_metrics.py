"""``MethodMetrics``: one mIoU metric per (stage, method) and each epoch's results as data.

:class:`~dcsm_lightning.SaliencySegmentation` feeds it the masks of every batch and
asks it for the epoch's figures; it logs ``<stage>/miou/<method>`` and
``<stage>/iou/<method>/<label>`` and returns them as plain floats.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from dcsm_lightning.metrics import SegmentationIoU

__all__ = ["STAGE_PREFIX", "MethodMetrics"]

#: Trainer stage -> the prefix of its logged keys and results.
STAGE_PREFIX = {"validate": "val", "test": "test"}


class MethodMetrics:
    """One :class:`~dcsm_lightning.metrics.SegmentationIoU` per (prefix, method).

    Args:
        label_names: the K + 1 label names, ``"background"`` first.
        methods: the methods to measure from the start (more with :meth:`add`).
    """

    def __init__(self, label_names: Sequence[str], methods: Iterable[str] = ()) -> None:
        self.label_names = list(label_names)
        self.metrics: dict[tuple[str, str], SegmentationIoU] = {}
        for method in methods:
            self.add(method)

    def add(self, method: str) -> None:
        """Measure ``method`` too (a no-op if it is measured already)."""
        for prefix in STAGE_PREFIX.values():
            if (prefix, method) not in self.metrics:
                metric = SegmentationIoU(len(self.label_names), per_class=True)
                self.metrics[(prefix, method)] = metric

    def to(self, device: torch.device) -> None:
        """Move every metric's state to ``device``."""
        for metric in self.metrics.values():
            metric.to(device)

    def update(self, prefix: str, masks: Mapping[str, Tensor], target: Tensor) -> None:
        """Add one batch: ``masks`` method -> int64 (B, S, S) label ids, ``target`` (B, S, S)
        ground-truth ids (255 = void, ignored)."""
        for method, pred in masks.items():
            self.metrics[(prefix, method)].update(pred, target.to(pred.device))

    def compute(
        self, prefix: str, methods: Iterable[str], log: Callable[..., Any]
    ) -> dict[str, dict[str, Any]]:
        """Finish the epoch of ``prefix``: log every updated method's figures and reset.

        Args:
            prefix: ``"val"`` or ``"test"``.
            methods: the methods in the order of the results.
            log: ``LightningModule.log``-like ``(name, value, sync_dist=True)``. The values
                are synced across processes by the metric itself; ``sync_dist=True`` tells
                Lightning so (the mean of equal values), so it does not warn under DDP.

        Returns:
            method -> ``{"miou": float, "per_class": list}`` (K + 1 IoUs in [0, 1], background
            first, NaN for a label absent from both prediction and ground truth).
        """
        results = {}
        for method in methods:
            metric = self.metrics[(prefix, method)]
            if not metric.update_called:
                continue
            per_class = metric.compute()
            metric.reset()
            miou = per_class.nanmean()
            log(f"{prefix}/miou/{method}", miou, sync_dist=True)
            for name, iou in zip(self.label_names, per_class, strict=True):
                if not torch.isnan(iou):
                    log(f"{prefix}/iou/{method}/{name}", iou, sync_dist=True)
            results[method] = {"miou": float(miou), "per_class": per_class.tolist()}
        return results
