"""Fixtures of the CRF tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from dcsm_lightning.data.adapter import SegmentationBatch


@pytest.fixture
def crf_view() -> Callable[[torch.Tensor, torch.Tensor], SegmentationBatch]:
    """``(rgb (B, S, S, 3), valid (B, S, S))`` -> the adapted batch ``DenseCRF.refine`` reads
    (ids "0", "1", ...; no image, as the CRF does not read it)."""

    def view(rgb: torch.Tensor, valid: torch.Tensor) -> SegmentationBatch:
        return SegmentationBatch(
            image=torch.zeros(len(rgb), 3, 1, 1),
            rgb=rgb,
            ids=[str(i) for i in range(len(rgb))],
            orig_size=torch.tensor([list(valid.shape[1:])] * len(rgb)),
            valid=valid,
        )

    return view
