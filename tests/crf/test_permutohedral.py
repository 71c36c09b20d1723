from __future__ import annotations

import pytest
import torch

from dcsm_lightning.crf.permutohedral import PermutohedralLattice


def _exact_normalised(features: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """n * K(n * v) with the exact Gaussian K_ij = exp(-|f_i - f_j|^2 / 2), n = 1/sqrt(K 1)."""
    kernel = torch.exp(-0.5 * torch.cdist(features, features) ** 2)
    norm = kernel.sum(1, keepdim=True).rsqrt()
    return norm * (kernel @ (norm * values))


@pytest.mark.parametrize(("d", "spread", "bound"), [(2, 6.0, 0.02), (5, 3.0, 0.04)])
def test_normalised_filter_close_to_exact_gaussian(d: int, spread: float, bound: float) -> None:
    g = torch.Generator().manual_seed(d)
    features = torch.rand(600, d, generator=g, dtype=torch.float64) * spread
    values = torch.rand(600, 3, generator=g, dtype=torch.float64)
    lattice = PermutohedralLattice(features.float())
    norm = lattice(torch.ones(600, 1)).rsqrt()
    out = (norm * lattice(norm * values.float())).double()
    exact = _exact_normalised(features, values)
    error = ((out - exact).norm() / exact.norm()).item()
    assert error < bound  # measured 0.012 (d=2) and 0.028 (d=5)
    # a wrong width is far worse: the filter really is a Gaussian of width 1
    wider = _exact_normalised(features / 1.5, values)
    assert ((out - wider).norm() / wider.norm()).item() > 2 * error


def test_lattice_structure_and_groups() -> None:
    g = torch.Generator().manual_seed(0)
    features = torch.rand(300, 3, generator=g) * 4
    lattice = PermutohedralLattice(features)
    torch.testing.assert_close(lattice.weights.sum(1), torch.ones(300))
    assert (lattice.weights >= -1e-6).all()
    assert lattice.offsets.shape == (300, 4) and int(lattice.offsets.max()) < lattice.size
    values = torch.rand(300, 2, generator=g)
    # two groups in one lattice == two lattices: no interaction across groups
    groups = (torch.arange(300) >= 120).long()
    both = PermutohedralLattice(features, groups)(values)
    first = PermutohedralLattice(features[:120])(values[:120])
    second = PermutohedralLattice(features[120:])(values[120:])
    torch.testing.assert_close(both, torch.cat([first, second]), rtol=0, atol=1e-6)
    # linear
    a, b = torch.rand(300, 1, generator=g), torch.rand(300, 1, generator=g)
    torch.testing.assert_close(lattice(2 * a + b), 2 * lattice(a) + lattice(b))


def test_lattice_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="features"):
        PermutohedralLattice(torch.zeros(5))
    with pytest.raises(ValueError, match="groups"):
        PermutohedralLattice(torch.zeros(5, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="widths"):  # 1e6 cells per axis in 5-D: no int64 code
        PermutohedralLattice(torch.tensor([[0.0] * 5, [1e6] * 5]))
