"""Fixtures of the saliency tests: a tiny seeded FCN, an image batch, candidates."""

from __future__ import annotations

import pytest
import torch
from saliency_refs import tiny_fcn, toy_scenes, trained_tiny_fcn
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


@pytest.fixture(scope="session")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A briefly trained tiny FCN (about 2 s), held-out toy images B=8 and their tags (bool)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = trained_tiny_fcn()
    finally:
        torch.set_num_threads(threads)
    images, labels = toy_scenes(8, seed=5)
    return model, images, labels > 0.5


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny models run fastest on one thread (and the CI cores are shared); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
