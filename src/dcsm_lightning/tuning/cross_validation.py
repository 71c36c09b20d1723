"""How much of the tuned gain survives on images the choice never saw: k-fold cross-validation.

The tuning images are split into ``k`` folds (a seeded permutation). For each fold, the
setting with the best mIoU on the *other* folds' images is picked among the settings the
search scored, and scored on the held-out fold; the held-out confusion counts of all folds are
pooled into one mIoU. The choice among candidates is thus always made without the images it is
scored on; which candidates exist came from the search on all images (re-running the whole
search per fold would cost k more searches), so the estimate measures the optimism of picking
the best of many settings on few images, the larger part when images are few. Because
:class:`~dcsm_lightning.tuning.search.Evaluator` keeps every result per image, this computes
nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dcsm_lightning.metrics import iou_from_confusion
from dcsm_lightning.tuning.grid import Setting
from dcsm_lightning.tuning.search import Evaluator

__all__ = ["CrossValidation", "cross_validate", "fold_indices"]


def fold_indices(count: int, folds: int, seed: int = 0) -> list[list[int]]:
    """``min(folds, count)`` disjoint, sorted index lists covering ``range(count)``, drawn with
    ``seed`` (sizes differ by at most one)."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    folds = max(1, min(folds, count))
    return [sorted(order[i::folds]) for i in range(folds)]


@dataclass(frozen=True)
class CrossValidation:
    """The pooled held-out mIoU in [0, 1] (with and without CRF) and each fold's choice."""

    miou: float
    miou_plain: float
    chosen: list[Setting]


def cross_validate(
    candidates: Sequence[Setting], evaluator: Evaluator, count: int, folds: int = 5, seed: int = 0
) -> CrossValidation | None:
    """k-fold estimate of the tuned mIoU over ``count`` images; None with fewer than 2 images
    or folds.

    Args:
        candidates: the settings to choose among (those the search scored), in search order
            (the first best wins a tie).
        evaluator: scores settings on all ``count`` images (cached).
        folds: k (at most ``count``). seed: the folds' draw.
    """
    if count < 2 or folds < 2 or not candidates:
        return None
    held_crf, held_plain, chosen = [], [], []
    for fold in fold_indices(count, folds, seed):
        rest = sorted(set(range(count)) - set(fold))
        scores = [evaluator(s).miou(rest) for s in candidates]
        best = candidates[max(range(len(scores)), key=lambda i: (scores[i], -i))]
        evaluation = evaluator(best)
        held_crf.append(evaluation.crf[fold].sum(0))
        held_plain.append(evaluation.plain[fold].sum(0))
        chosen.append(best)
    return CrossValidation(
        float(iou_from_confusion(torch.stack(held_crf).sum(0))),
        float(iou_from_confusion(torch.stack(held_plain).sum(0))),
        chosen,
    )
