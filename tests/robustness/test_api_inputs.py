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


def test_dense_crf_accepts_read_only_and_non_contiguous_arrays(tmp_path):
    import numpy as np
    from PIL import Image

    from dcsm_lightning.crf import dense_crf

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    rgb = np.asarray(Image.open(tmp_path / "a.png").convert("RGB"))  # read-only
    assert not rgb.flags.writeable
    probs = rng.random((3, 12, 16)).astype(np.float32)
    probs /= probs.sum(0)
    expected = dense_crf(rgb.copy(), probs.copy())
    probs.flags.writeable = False
    assert np.array_equal(dense_crf(rgb, probs), expected)
    wide = np.zeros((12, 32, 3), np.uint8)
    wide[:, ::2] = rgb
    strided = np.stack([probs, probs], axis=-1)[..., 0]
    assert not wide[:, ::2].flags.c_contiguous and not strided.flags.c_contiguous
    assert np.array_equal(dense_crf(wide[:, ::2], strided), expected)
