"""``SegmentationIoU`` agrees with torchmetrics' ``JaccardIndex`` wherever both are defined."""

from __future__ import annotations

import inspect

import pytest
import torch
from torchmetrics import JaccardIndex

from dcsm_lightning.metrics import SegmentationIoU

K = 5


def _per_class_metric() -> SegmentationIoU:
    """Per-class scores from ``compute()`` (a dict today; a tensor on the per-class flag soon)."""
    if "per_class" in inspect.signature(SegmentationIoU).parameters:
        return SegmentationIoU(K, per_class=True)
    return SegmentationIoU(K)


def _per_class(out) -> torch.Tensor:
    return out["per_class"] if isinstance(out, dict) else out


def _batch(seed: int, absent: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, K, (3, 16, 16), generator=g)
    noise = torch.randint(0, K, (3, 16, 16), generator=g)
    pred = torch.where(torch.rand(3, 16, 16, generator=g) < 0.7, target, noise)
    if absent is not None:  # a class that occurs nowhere
        target[target == absent] = 0
        pred[pred == absent] = 0
    target[torch.rand(3, 16, 16, generator=g) < 0.1] = 255  # void pixels, not counted
    return pred, target


@pytest.mark.parametrize("absent", [None, 3])
def test_agrees_with_jaccard_index_over_a_split(absent):
    ours = _per_class_metric()
    theirs = JaccardIndex(task="multiclass", num_classes=K, average="none", ignore_index=255)
    for seed in range(3):  # several updates: one confusion matrix over the split
        pred, target = _batch(seed, absent)
        ours.update(pred, target)
        theirs.update(pred, target)
    per_class, reference = _per_class(ours.compute()), theirs.compute()
    assert reference.gt(0).sum() >= K - 1  # non-trivial scores
    defined = ~torch.isnan(per_class)
    torch.testing.assert_close(per_class[defined], reference[defined].to(per_class.dtype))
    if absent is None:
        assert defined.all()
    else:  # the difference the docstring gives: NaN (left out of the mean) vs 0
        assert defined.tolist() == [k != absent for k in range(K)]
        assert reference[absent] == 0


def test_void_predictions_are_misses_here_and_refused_by_jaccard_index():
    pred, target = _batch(4)
    counted = target != 255
    pred[counted & (torch.rand(pred.shape, generator=torch.Generator().manual_seed(0)) < 0.1)] = 255
    ours = _per_class_metric()
    ours.update(pred, target)
    with_void = _per_class(ours.compute())
    clean = _per_class_metric()
    clean.update(torch.where(pred == 255, target, pred), target)  # void replaced by the truth
    assert (with_void < _per_class(clean.compute())).all()  # every class lost true positives
    with pytest.raises(RuntimeError):
        JaccardIndex(task="multiclass", num_classes=K, average="none", ignore_index=255)(
            pred, target
        )
