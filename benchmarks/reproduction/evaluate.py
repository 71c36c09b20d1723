"""Evaluate one setting over a split: maps once per batch, masks with and without each CRF.

The library's flow does the work: :func:`~dcsm_lightning.segmentation.flow.segment_batch`
picks the candidates, runs the strategy, makes the plain masks (Eq. 7) and lets one named
:class:`~dcsm_lightning.DenseCRF` per :class:`~dcsm_lightning.CRFSettings` refine the same
maps; :class:`~dcsm_lightning.SegmentationIoU` scores every variant. Results are kept in a
JSON file keyed by everything they depend on, so a rerun (an interrupted study) skips what is
done.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from torchmetrics.classification import MultilabelAveragePrecision

from dcsm_lightning import CRFSettings, DenseCRF, SegmentationIoU
from dcsm_lightning.data.adapter import as_adapter
from dcsm_lightning.errors import UserError
from dcsm_lightning.files import save_json
from dcsm_lightning.segmentation.flow import CandidateRule, segment_batch
from dcsm_lightning.segmentation.methods import Method

from .tables import Setting

Result = dict[str, Any]  # {"miou", "per_class", "mAP", "images", "seconds"}


def crf_key(settings: CRFSettings | None) -> str:
    """``"none"`` for the plain masks, else the CRF's settings as JSON."""
    return "none" if settings is None else json.dumps(asdict(settings), sort_keys=True)


class ResultCache:
    """Results on disk (``results.json``), keyed by checkpoint, split, setting and CRF.

    Args:
        path: the JSON file (created on the first :meth:`put`; rewritten atomically).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, Result] = {}
        if path.is_file():
            try:
                entries = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise UserError(
                    f"{path} is not a results file ({err})", "delete it to start the study afresh"
                ) from None
            for key, result in entries.items():  # NaN was written as null
                result["per_class"] = [math.nan if v is None else v for v in result["per_class"]]
                result["miou"] = math.nan if result["miou"] is None else result["miou"]
                self.entries[key] = result

    @staticmethod
    def key(context: str, setting: Setting, crf: CRFSettings | None) -> str:
        return json.dumps([context, setting.key(), crf_key(crf)])

    def get(self, context: str, setting: Setting, crf: CRFSettings | None) -> Result | None:
        return self.entries.get(self.key(context, setting, crf))

    def put_all(self, context: str, setting: Setting, results: dict[str, Result]) -> None:
        """Store ``crf_key -> result`` of one setting and write the file."""
        for crf, result in results.items():
            self.entries[json.dumps([context, setting.key(), crf])] = result
        save_json(self.path, self.entries, overwrite=True)


def evaluate_setting(
    model: torch.nn.Module,
    loader: DataLoader,
    setting: Setting,
    class_names: Sequence[str],
    crfs: Sequence[CRFSettings],
    crf_workers: int | None,
    progress: Callable[[str], None] = print,
    crf_backend: str = "auto",
) -> dict[str, Result]:
    """mIoU of one setting's masks without and with each CRF, from one pass over ``loader``.

    Args:
        model: the classifier (eval mode), image B x 3 x S x S -> scores B x K (x h x w).
        loader: batches of the batch contract (``image``, ``rgb``, ``valid``, ``mask``, ...).
        setting: the strategy and candidate rule.
        class_names: the K class names.
        crfs: the CRF settings whose masks are scored too, each from the same maps.
        crf_workers: ``DenseCRF(num_workers=...)``: None = the available cores, 0 = in process.
        progress: called with a short status line about every 30 s.
        crf_backend: ``DenseCRF(backend=...)``; the torch backend refines the maps on the
            model's device.

    Returns:
        ``crf_key -> {"miou", "per_class" (K + 1 IoUs, background first, NaN absent), "mAP"
        (the classifier's multi-label mAP on these images), "images", "seconds"}``, IoUs in
        [0, 1]; ``"none"`` is the plain masks.

    Raises:
        UserError: a batch without ground-truth masks.
    """
    device = next(model.parameters()).device
    strategy = setting.build()
    rule = CandidateRule(setting.candidates, min_candidates=setting.min_candidates)
    adapter = as_adapter(None)
    # one named refiner per CRF setting: the masks of all come from the same maps
    unique = {crf_key(c): c for c in crfs}.values()
    refiners = [
        DenseCRF(c, crf_workers, name=f"crf{i}", backend=crf_backend) for i, c in enumerate(unique)
    ]
    keys = {Method(strategy.name): "none"}
    keys |= {Method(strategy.name, r.name): crf_key(r.settings) for r in refiners}
    metrics = {key: SegmentationIoU(len(class_names) + 1, per_class=True) for key in keys.values()}
    average_precision = MultilabelAveragePrecision(num_labels=len(class_names))
    start = last_report = time.perf_counter()
    images = 0
    try:
        for index, batch in enumerate(loader):
            batch["image"] = batch["image"].to(device)
            view = adapter(batch, index)
            if view.mask is None:
                raise UserError(
                    f"batch {index} of the evaluated split has no ground-truth masks",
                    "mIoU needs a mask per image (VOC: SegmentationClass / SegmentationClassAug)",
                )
            out = segment_batch(
                model, view, [strategy], refiners, candidates=rule, stage="validate"
            )
            mask = view.mask.cpu()
            for method, masks in out.masks.items():
                metrics[keys[method]].update(masks.cpu(), mask)
            if view.labels is not None:
                average_precision.update(out.probs.cpu(), view.labels.long().cpu())
            images += len(mask)
            if time.perf_counter() - last_report > 30:
                last_report = time.perf_counter()
                progress(f"    {index + 1}/{len(loader)} batches, {last_report - start:.0f} s")
    finally:
        for refiner in refiners:
            refiner.close()
    seconds = time.perf_counter() - start
    mean_ap = float(average_precision.compute()) if images and view.labels is not None else None
    results = {}
    for key, metric in metrics.items():
        per_class = metric.compute()
        results[key] = {
            "miou": float(per_class.nanmean()),
            "per_class": per_class.tolist(),
            "mAP": mean_ap,
            "images": images,
            "seconds": seconds,
        }
    return results
