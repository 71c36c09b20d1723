"""The permutohedral lattice (Adams, Baek & Davis 2010) in torch operations: Gaussian filtering.

:class:`PermutohedralLattice` approximates ``out_i = sum_j exp(-|f_i - f_j|^2 / 2) v_j`` over
``N`` points with features ``f`` (already divided by their widths) in ``O(N d^2)``: each point
is *splatted* onto the ``d + 1`` vertices of the lattice simplex that contains it (barycentric
weights), the lattice values are *blurred* with the kernel ``[1/2, 1, 1/2]`` along each of the
``d + 1`` lattice directions, and the result is *sliced* back with the same weights. It follows
the lattice of Kraehenbuehl's ``densecrf`` (as packaged by ``pydensecrf``): the same elevation
and scaling of the features, the same blur and the same constant ``1 / (1 + 2^-d)``, so its
output matches ``pydensecrf``'s filter up to float rounding. Its error against the exact
Gaussian is measured in ``benchmarks/crf_speed.py``.

The hash table of the lattice points is built without Python loops over points: each vertex's
integer coordinates are encoded as one int64 (the group, e.g. the image of a batch, as the
most significant digit), ``torch.unique`` numbers the vertices, and the neighbours along each
direction are found with ``torch.searchsorted`` in the sorted codes. It runs on any device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["PermutohedralLattice"]

_MAX_CODE = 2**62


def _elevate(features: Tensor) -> Tensor:
    """(N, d) features -> (N, d + 1) points on the plane ``sum = 0``, scaled so that the lattice's
    blur is a Gaussian of standard deviation 1 in feature units (Adams et al. 2010, p. 5-6)."""
    d = features.shape[1]
    inv_std = float(torch.tensor(math.sqrt(2.0 / 3.0) * (d + 1), dtype=torch.float32))
    scale = torch.tensor(
        [inv_std / math.sqrt((i + 1) * (i + 2)) for i in range(d)],
        dtype=torch.float32,
        device=features.device,
    )
    scaled = features.to(torch.float32) * scale
    # suffix sums: tail[:, j] = sum_{i >= j} scaled[:, i], accumulated from the last coordinate
    tail = scaled.flip(1).cumsum(1).flip(1)
    steps = torch.arange(1, d + 1, dtype=torch.float32, device=features.device)
    rest = torch.cat([tail[:, 1:], tail.new_zeros(len(tail), 1)], dim=1) - steps * scaled
    return torch.cat([tail[:, :1], rest], dim=1)


def _simplex(elevated: Tensor) -> tuple[Tensor, Tensor]:
    """The nearest remainder-0 lattice point and the rank of each coordinate's offset from it.

    Returns ``(rem0, rank)``, int64 (N, d + 1): ``rem0`` a multiple of ``d + 1`` per coordinate
    (summing to 0 after the correction), ``rank`` a permutation of ``0..d`` per point (0 = the
    largest offset; ties go to the lower index)."""
    d1 = elevated.shape[1]
    down = torch.round(elevated * (1.0 / d1))  # half to even, as SSE rounding
    rem0 = (down * d1).to(torch.int64)
    total = down.sum(1, keepdim=True).to(torch.int64)
    diff = elevated - rem0.to(elevated.dtype)
    index = torch.arange(d1, device=elevated.device)
    later = index[None, :] > index[:, None]  # later[i, j]: j comes after i
    earlier = index[None, :] < index[:, None]
    other, this = diff[:, None, :], diff[:, :, None]  # [n, i, j]: diff_j, diff_i
    rank = ((later & (other > this)) | (earlier & (other >= this))).sum(2)
    rank = rank + total
    low, high = rank < 0, rank > d1 - 1
    rank = rank + d1 * low - d1 * high
    rem0 = rem0 + d1 * low - d1 * high
    return rem0, rank


def _barycentric(elevated: Tensor, rem0: Tensor, rank: Tensor) -> Tensor:
    """Barycentric weights (N, d + 1) of each point in its simplex (Adams et al. 2010, p. 10);
    weight ``r`` belongs to the vertex of remainder ``r``. Each row sums to 1."""
    n, d1 = elevated.shape
    v = (elevated - rem0.to(elevated.dtype)) * (1.0 / d1)
    bary = elevated.new_zeros(n, d1 + 1)
    bary.scatter_add_(1, (d1 - 1) - rank, v)
    bary.scatter_add_(1, d1 - rank, -v)
    bary[:, 0] += 1.0 + bary[:, d1]
    return bary[:, :d1]


def _vertex_keys(rem0: Tensor, rank: Tensor) -> Tensor:
    """Integer coordinates (N, d + 1 vertices, d) of the simplex's vertices; the last of the
    ``d + 1`` coordinates is left out (they sum to 0)."""
    d1 = rem0.shape[1]
    d = d1 - 1
    remainder = torch.arange(d1, device=rem0.device)[None, :, None]  # vertex r
    wraps = rank[:, None, :d] > d - remainder  # canonical simplex: r or r - (d + 1)
    return rem0[:, None, :d] + remainder - d1 * wraps


class PermutohedralLattice:
    """Gaussian filter over points with features ``f``: ``out_i ~ sum_j exp(-|f_i-f_j|^2/2) v_j``.

    The weight a point gives itself is included (as in ``pydensecrf``); the filter is linear,
    and symmetric only approximately (the blurs along the ``d + 1`` directions, applied in a
    fixed order, do not commute at the lattice's edges). Build once per feature set, call it
    on any values.

    Args:
        features: float tensor of shape (N, d), d >= 1: each point's features divided by
            their Gaussian widths (e.g. ``x / sxy, y / sxy, r / srgb, ...``).
        groups: optional int64 tensor of shape (N,) with values >= 0: points of different
            groups never interact (one lattice for a batch of images).

    Raises:
        ValueError: ``features`` not 2-D float, ``groups`` of another length, or features
            spanning too many lattice cells to encode (widths far below the data's range).
    """

    def __init__(self, features: Tensor, groups: Tensor | None = None) -> None:
        if features.ndim != 2 or features.shape[1] < 1 or not features.is_floating_point():
            raise ValueError(f"Expected float `features` of shape (N, d), got {features.shape}.")
        n, d = features.shape
        if groups is not None and tuple(groups.shape) != (n,):
            raise ValueError(f"Expected `groups` of shape ({n},), got {tuple(groups.shape)}.")
        self.d = d
        elevated = _elevate(features)
        rem0, rank = _simplex(elevated)
        #: (N, d + 1) barycentric weights of each point's vertices
        self.weights = _barycentric(elevated, rem0, rank)
        keys = _vertex_keys(rem0, rank)  # (N, d + 1, d)
        codes, strides = _encode(keys, groups)
        uniq, inverse = torch.unique(codes, return_inverse=True)
        #: (N, d + 1) lattice index of each point's vertices
        self.offsets = inverse
        #: number of lattice points; row ``size`` of the lattice values is the zero row
        self.size = len(uniq)
        self.neighbours = []
        for j in range(d + 1):  # direction j: +(d + 1) on coordinate j, -1 on every coordinate
            step = -sum(strides) + (d + 1) * (strides[j] if j < d else 0)
            self.neighbours.append((_lookup(uniq, uniq + step), _lookup(uniq, uniq - step)))

    def __call__(self, values: Tensor) -> Tensor:
        """Filter ``values`` float (N, C) -> float (N, C), dtype of ``values``."""
        c = values.shape[1]
        lattice = values.new_zeros(self.size + 1, c)  # + the zero row for missing neighbours
        weights = self.weights.to(values.dtype)
        for r in range(self.d + 1):  # splat
            lattice.index_add_(0, self.offsets[:, r], weights[:, r, None] * values)
        for n1, n2 in self.neighbours:  # blur
            lattice = lattice + 0.5 * (lattice[n1] + lattice[n2])
        alpha = 1.0 / (1.0 + 2.0 ** (-self.d))
        out = values.new_zeros(values.shape)
        for r in range(self.d + 1):  # slice
            out += weights[:, r, None] * lattice[self.offsets[:, r]]
        return out * alpha


def _encode(keys: Tensor, groups: Tensor | None) -> tuple[Tensor, list[int]]:
    """(N, V, d) integer keys -> (N, V) int64 codes and each coordinate's stride.

    The digits leave ``d + 1`` spare values on both sides, so a neighbour's code is the code
    plus a constant (no carry between digits)."""
    d = keys.shape[2]
    flat = keys.reshape(-1, d)
    low = flat.amin(0) - (d + 1)
    radix = (flat.amax(0) - low + (d + 2)).tolist()
    strides, stride = [], 1
    for r in reversed(radix):
        strides.insert(0, stride)
        stride *= r
    n_groups = 1 if groups is None or len(groups) == 0 else int(groups.max()) + 1
    if stride * n_groups >= _MAX_CODE:
        raise ValueError(
            "The CRF features span too many lattice cells to encode in int64; increase the "
            "Gaussian widths (sxy, srgb) or use backend='pydensecrf'."
        )
    stride_t = torch.tensor(strides, dtype=torch.int64, device=keys.device)
    codes = ((keys - low) * stride_t).sum(2)
    if groups is not None:
        codes = codes + groups.to(torch.int64)[:, None] * stride
    return codes, strides


def _lookup(sorted_codes: Tensor, queries: Tensor) -> Tensor:
    """Index of each query in ``sorted_codes``, or ``len(sorted_codes)`` (the zero row)."""
    size = len(sorted_codes)
    index = torch.searchsorted(sorted_codes, queries).clamp_(max=max(size - 1, 0))
    found = sorted_codes[index] == queries
    index = torch.where(found, index, torch.full_like(index, size))
    return torch.cat([index, index.new_full((1,), size)])  # the zero row's neighbours: itself
