"""Eq. 3-5 against hand-computed values, and the equation functions' edge cases."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from dcsm_lightning.saliency import (
    DCSM,
    max_abs_over_channels,
    normalize_by_max,
    positive_pair_differences,
    subtract_other_candidates,
    tanh_normalize,
    upsample_maps,
)


class Quadratic(nn.Module):
    """Score map ``s_c = 0.5 * (sum_k W[c, k] f_k)^2``, so ``dS_c/df_k = W[c, k] * u_c``."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.einsum("kc,bchw->bkhw", self.weight, f) ** 2


def quadratic_model() -> nn.Module:
    return nn.Sequential(
        OrderedDict(layer=nn.Identity(), head=Quadratic(torch.tensor([[2.0, 1.0], [1.0, -1.0]])))
    )


# f_0 = [1, 2, 0], f_1 = [0, 1, 3] on a 1 x 3 image.
IMAGE = torch.tensor([[[[1.0, 2.0, 0.0]], [[0.0, 1.0, 3.0]]]])
BOTH = torch.tensor([[True, True]])
# By hand: u_0 = 2 f_0 + f_1 = [2, 5, 3]; grads of class 0: 2 u_0 = [4, 10, 6] and u_0, so
# M_0 = [4, 10, 6]. u_1 = f_0 - f_1 = [1, 1, -3]; grads +-u_1, so M_1 = [1, 1, 3].
# Eq. 4: Mtilde_0 = max(M_0 - M_1, 0) = [3, 9, 3]; Mtilde_1 = max(M_1 - M_0, 0) = [0, 0, 0].
T1, T3 = math.tanh(1.0), math.tanh(3.0)


def _dcsm(**kwargs):
    return DCSM(layers=["head"], scales=(1.0,), backprop="bp", **kwargs)


def test_hand_computed_eq3_eq4_eq5():
    model = quadratic_model()
    raw = _dcsm().layer_maps(model, IMAGE, BOTH)["head"]
    assert torch.allclose(
        raw[0, :, 0], torch.tensor([[4.0, 10.0, 6.0], [1.0, 1.0, 3.0]]), atol=1e-6
    )
    maps = _dcsm(alpha=3.0)(model, IMAGE, BOTH)
    # Eq. 5: tanh(3 * [3, 9, 3] / 9) = [tanh 1, tanh 3, tanh 1]; the zero map stays zero.
    expected = torch.tensor([[T1, T3, T1], [0.0, 0.0, 0.0]])
    assert torch.allclose(maps[0, :, 0], expected, atol=1e-6)


def test_hand_computed_without_max_normalisation():
    maps = _dcsm(alpha=0.1, normalize="none")(quadratic_model(), IMAGE, BOTH)
    expected = torch.tensor([[math.tanh(0.3), math.tanh(0.9), math.tanh(0.3)], [0.0, 0.0, 0.0]])
    assert torch.allclose(maps[0, :, 0], expected, atol=1e-6)


def test_hand_computed_authors_variant():
    # D_0 = [3, 9, 3] -> tanh(3 D / 9) = [tanh 1, tanh 3, tanh 1]; D_1 = -D_0 has no positive part.
    # Final: tanh(3 * P / max P) with P = [tanh 1, tanh 3, tanh 1].
    maps = _dcsm(variant="authors")(quadratic_model(), IMAGE, BOTH)
    p0 = torch.tensor([T1, T3, T1])
    assert torch.allclose(maps[0, 0, 0], torch.tanh(3 * p0 / T3), atol=1e-6)
    assert torch.equal(maps[0, 1], torch.zeros(1, 3))


def test_authors_variant_maps_only_classes_above_threshold():
    # Max scores: class 0: 0.5 * 5^2 = 12.5, class 1: 0.5 * 3^2 = 4.5;
    # sigmoid: 0.99999627 and 0.98901.
    inactive = _dcsm(variant="authors", subtract=False, threshold=0.99)(
        quadratic_model(), IMAGE, BOTH
    )
    assert inactive[0, 0].max() > 0 and torch.equal(inactive[0, 1], torch.zeros(1, 3))
    # Class 1 is still a subtrahend of class 0 (same as with both active).
    m = _dcsm(variant="authors", threshold=0.99)(quadratic_model(), IMAGE, BOTH)
    both = _dcsm(variant="authors")(quadratic_model(), IMAGE, BOTH)
    assert torch.allclose(m[0, 0], both[0, 0], atol=1e-6)


def test_subtract_other_candidates_lonely_keeps_raw_and_invalid_is_zero():
    maps = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    valid = torch.tensor([[True, False, False], [True, True, True]])
    out = subtract_other_candidates(maps, valid)
    assert torch.equal(out[0, 0], maps[0, 0])
    assert torch.equal(out[0, 1:], torch.zeros(2, 4, 5))
    expected = (maps[1, 0] - maps[1, 1]).clamp(min=0) + (maps[1, 0] - maps[1, 2]).clamp(min=0)
    assert torch.allclose(out[1, 0], expected)


def test_normalisation_edge_cases():
    zero = torch.zeros(1, 1, 3, 3)
    assert torch.equal(tanh_normalize(zero, 3.0), zero)
    m = torch.tensor([[[[0.0, 2.0], [1.0, 4.0]]]])
    assert torch.allclose(normalize_by_max(m), m / 4)
    assert torch.equal(normalize_by_max(m, "none"), m)
    assert torch.allclose(tanh_normalize(m, 2.0), torch.tanh(2 * m / 4))
    with pytest.raises(ValueError, match="normalize"):
        normalize_by_max(m, "mean")


def test_positive_pair_differences_of_signed_maps():
    maps = torch.tensor([[[[1.0, 3.0]], [[2.0, 0.0]]]])  # B=1, N=2, 1 x 2
    valid = torch.tensor([[True, True]])
    out = positive_pair_differences(maps, valid, valid, alpha=1.0)
    # D_0 = [-1, 3] -> /3 -> tanh, clamp: [0, tanh 1]; D_1 = [1, -3] -> /1: [tanh 1, 0].
    assert torch.allclose(out[0, :, 0], torch.tensor([[0.0, T1], [T1, 0.0]]), atol=1e-6)


def test_max_abs_and_upsample():
    g = torch.tensor([[[[-3.0]], [[2.0]]]])  # 1 x 2 channels x 1 x 1
    assert max_abs_over_channels(g).item() == 3.0
    m = torch.arange(4.0).reshape(1, 2, 2)
    up = upsample_maps(m, (4, 4))
    ref = torch.nn.functional.interpolate(
        m[None], size=(4, 4), mode="bilinear", align_corners=False
    )[0]
    assert torch.equal(up, ref)
    assert upsample_maps(m, (2, 2)) is m
