"""MethodMetrics: per-method IoU against a hand computation, epochs independent, logged keys."""

from __future__ import annotations

import math

import pytest
import torch

from dcsm_lightning.segmentation.method_metrics import MethodMetrics

LABELS = ["background", "cat", "dog"]


def _epoch(metrics: MethodMetrics, pred: torch.Tensor, target: torch.Tensor) -> tuple[dict, dict]:
    logged = {}
    metrics.update("val", {"m": pred}, target)
    results = metrics.compute(
        "val", ["m", "unused"], lambda k, v, **kw: logged.__setitem__(k, float(v))
    )
    return results, logged


def test_results_match_a_hand_computation_and_epochs_do_not_mix():
    metrics = MethodMetrics(LABELS, ["m", "unused"])
    target = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 255]]])
    pred = torch.tensor([[[0, 1, 1, 1], [0, 0, 0, 2]]])
    results, logged = _epoch(metrics, pred, target)
    # background: inter 3, union 5 (pred 0 at 4 valid pixels, target 0 at 4); cat: 2 / 4;
    # dog: absent from the target, predicted only on the void pixel (ignored) -> NaN.
    per_class = results["m"]["per_class"]
    assert per_class[:2] == pytest.approx([3 / 5, 2 / 4]) and math.isnan(per_class[2])
    assert results["m"]["miou"] == pytest.approx((3 / 5 + 2 / 4) / 2)
    assert set(results) == {"m"}  # a method never updated gives no result
    expected = {"val/miou/m": 0.55, "val/iou/m/background": 3 / 5, "val/iou/m/cat": 0.5}
    assert logged == pytest.approx(expected)

    again, _ = _epoch(metrics, target.clamp(max=2), target)  # a perfect second epoch
    assert again["m"]["miou"] == 1.0  # nothing of the first epoch is left
