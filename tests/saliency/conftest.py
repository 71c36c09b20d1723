"""Fixtures of the saliency tests: a tiny seeded FCN, an image batch, candidates."""

from __future__ import annotations

import pytest
import torch
from saliency_refs import tiny_fcn
from torch import nn


@pytest.fixture
def model() -> nn.Module:
    return tiny_fcn().eval()


@pytest.fixture
def image() -> torch.Tensor:
    return torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def candidates() -> torch.Tensor:
    # Different candidate sets per image: 3 and 2 candidates.
    return torch.tensor([[True, False, True, True], [False, True, False, True]])
