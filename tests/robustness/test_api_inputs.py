"""Internal inputs refused with a clear error instead of a silently wrong result."""

from __future__ import annotations

import math

import pytest
import torch

from dcsm_lightning.saliency import select_candidates


def test_select_candidates_refuses_logits():
    logits = torch.tensor([[2.5, -1.0, 0.3]])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*torch.sigmoid\(logits\)"):
        select_candidates(logits, 0.5, 1)


@pytest.mark.parametrize("threshold", [math.nan, -0.1, 1.5])
def test_select_candidates_refuses_a_nan_or_out_of_range_threshold(threshold):
    probs = torch.tensor([[0.9, 0.2, 0.6]])
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\]"):
        select_candidates(probs, threshold, 1)
