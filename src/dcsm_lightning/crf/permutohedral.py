"""The permutohedral lattice (Adams, Baek & Davis 2010) in torch operations: Gaussian filtering.

:class:`PermutohedralLattice` approximates ``out_i = c sum_j exp(-|f_i - f_j|^2 / 2) v_j`` over
``N`` points with features ``f`` (already divided by their widths) in ``O(N d^2)``: each point
is *splatted* onto the ``d + 1`` vertices of the lattice simplex that contains it (barycentric
weights), the lattice values are *blurred* with the kernel ``[1/2, 1, 1/2]`` along each of the
``d + 1`` lattice directions, and the result is *sliced* back with the same weights. It follows
the lattice of Kraehenbuehl's ``densecrf`` (as packaged by ``pydensecrf``): the same elevation
and scaling of the features, the same blur and the same constant ``1 / (1 + 2^-d)``, so its
output matches ``pydensecrf``'s filter up to float rounding. The scale ``c`` (about 0.5 for
d = 5) varies a little from point to point; normalised as the CRF does (``n K(n v)``,
``n = 1 / sqrt(K 1)``), the filter's error against the exact Gaussian is measured in
``benchmarks/crf_agreement.py`` (relative L2 1 - 3 %).

The hash table of the lattice points is built without Python loops over points: each vertex's
integer coordinates are encoded as one int64 (the group, e.g. the image of a batch, as the
most significant digit), one stable sort numbers the distinct codes (the lattice points) and
orders the splat, and the neighbours along each direction are found with
``torch.searchsorted`` in the sorted codes. Splat and slice are sparse CSR matrix products,
the blur two ``index_select`` per direction: it runs on any device.
"""

from __future__ import annotations

import math
import warnings

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


class PermutohedralLattice:
    """Gaussian filter over points with features ``f``: ``out_i ~ sum_j exp(-|f_i-f_j|^2/2) v_j``.

    The weight a point gives itself is included (as in ``pydensecrf``); the filter is linear,
    and symmetric only approximately (the blurs along the ``d + 1`` directions, applied in a
    fixed order, do not commute at the lattice's edges). Build once per feature set, call it
    on any values.

    Args:
        features: float tensor of shape (N, d), N, d >= 1: each point's features divided by
            their Gaussian widths (e.g. ``x / sxy, y / sxy, r / srgb, ...``).
        groups: optional int64 tensor of shape (N,) with values >= 0: points of different
            groups never interact (one lattice for a batch of images).

    Raises:
        ValueError: ``features`` not 2-D float, ``groups`` of another length, or features
            spanning too many lattice cells to encode (widths far below the data's range).
    """

    def __init__(self, features: Tensor, groups: Tensor | None = None) -> None:
        if features.ndim != 2 or 0 in features.shape or not features.is_floating_point():
            raise ValueError(
                f"Expected float `features` of shape (N, d), N, d >= 1, got {features.shape}."
            )
        n, d = features.shape
        if groups is not None and tuple(groups.shape) != (n,):
            raise ValueError(f"Expected `groups` of shape ({n},), got {tuple(groups.shape)}.")
        self.d = d
        elevated = _elevate(features)
        rem0, rank = _simplex(elevated)
        #: (N, d + 1) barycentric weights of each point's vertices
        self.weights = _barycentric(elevated, rem0, rank)
        codes, strides = _vertex_codes(rem0, rank, groups)
        # the hash table: sort the codes once; equal codes = one lattice point
        sorted_codes, order = codes.reshape(-1).sort(stable=True)
        first = torch.ones_like(sorted_codes, dtype=torch.bool)
        first[1:] = sorted_codes[1:] != sorted_codes[:-1]
        uniq = sorted_codes[first]
        #: number of lattice points; row ``size`` of the lattice values is the zero row
        self.size = len(uniq)
        point = first.cumsum(0) - 1  # lattice index of each sorted entry
        #: (N, d + 1) lattice index of each point's vertices
        self.offsets = torch.empty_like(point).scatter_(0, order, point).view(n, d + 1)
        self.neighbours = []
        for j in range(d + 1):  # direction j: +(d + 1) on coordinate j, -1 on every coordinate
            step = -sum(strides) + (d + 1) * (strides[j] if j < d else 0)
            self.neighbours.append(_neighbours(uniq, step))
        self._splat, self._slice = _splat_slice(self.offsets, self.weights, order, point)

    def __call__(self, values: Tensor) -> Tensor:
        """Filter ``values`` float (N, C) -> float (N, C), dtype of ``values``."""
        lattice = self._splat @ values.to(torch.float32)  # (size + 1, C), the last row zero
        for n1, n2 in self.neighbours:  # blur [1/2, 1, 1/2] along each direction
            blurred = lattice.index_select(0, n1).add_(lattice.index_select(0, n2))
            lattice = blurred.mul_(0.5).add_(lattice)
        return (self._slice @ lattice).to(values.dtype)


def _vertex_codes(rem0: Tensor, rank: Tensor, groups: Tensor | None) -> tuple[Tensor, list[int]]:
    """int64 codes (N, d + 1) of each point's simplex vertices, and each coordinate's stride.

    Vertex ``r`` has coordinates ``rem0 + r - (d + 1) [rank > d - r]`` (the canonical simplex,
    Adams et al. 2010); the last coordinate is left out (they sum to 0). A code is the
    coordinates as digits of a mixed radix with ``2 (d + 1)`` spare values on each side, so a
    neighbour's code is the code plus a constant (no carry), and the group above them all."""
    n, d1 = rem0.shape
    d = d1 - 1
    low = rem0[:, :d].amin(0) - 2 * d1
    radix = (rem0[:, :d].amax(0) - low + 2 * d1 + 1).tolist()
    strides, stride = [], 1
    for r in reversed(radix):
        strides.insert(0, stride)
        stride *= r
    n_groups = 1 if groups is None else int(groups.max()) + 1
    if stride * n_groups >= _MAX_CODE:
        raise ValueError(
            "The CRF features span too many lattice cells to encode in int64; increase the "
            "Gaussian widths (sxy, srgb) or use backend='pydensecrf'."
        )
    stride_t = torch.tensor(strides, dtype=torch.int64, device=rem0.device)
    base = ((rem0[:, :d] - low) * stride_t).sum(1, keepdim=True)
    if groups is not None:
        base = base + groups.to(torch.int64)[:, None] * stride
    # wrapped[n, r] = sum of the strides of the coordinates with rank > d - r
    by_rank = rem0.new_zeros(n, d1 + 1).scatter_(1, rank[:, :d], stride_t.expand(n, d))
    wrapped = by_rank.flip(1).cumsum(1)[:, :d1]  # [n, r]: ranks d + 1 - r .. d
    remainder = torch.arange(d1, device=rem0.device)
    return base + remainder * sum(strides) - d1 * wrapped, strides


def _splat_slice(
    offsets: Tensor, weights: Tensor, order: Tensor, point: Tensor
) -> tuple[Tensor, Tensor]:
    """Sparse CSR matrices of the splat (M + 1, N) and the slice (N, M + 1) (``1 / (1 +
    2^-d)`` folded in), M lattice points + the zero row; ``order`` sorts the flat (N (d + 1))
    vertex entries by lattice point (``point``, pixels in order within one). Their products
    with dense values run on CPU and CUDA alike."""
    n, d1 = offsets.shape
    rows = int(point[-1]) + 2
    device = offsets.device
    flat, w = offsets.reshape(-1), weights.reshape(-1)
    alpha = 1.0 / (1.0 + 2.0 ** (-(d1 - 1)))
    slice_rows = torch.arange(0, n * d1 + 1, d1, device=device)
    splat_rows = torch.zeros(rows + 1, dtype=torch.int64, device=device)
    splat_rows[1:] = torch.bincount(point, minlength=rows).cumsum(0)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        splat = torch.sparse_csr_tensor(splat_rows, order // d1, w[order], (rows, n))
        sliced = torch.sparse_csr_tensor(slice_rows, flat, w * alpha, (n, rows))
    return splat, sliced


def _neighbours(sorted_codes: Tensor, step: int) -> tuple[Tensor, Tensor]:
    """Index of the lattice points at ``code + step`` and ``code - step`` (M + 1 each), or M
    (the zero row) where there is none; the zero row's neighbours are itself."""
    size = len(sorted_codes)
    index = torch.searchsorted(sorted_codes, sorted_codes + step).clamp_(max=size - 1)
    found = sorted_codes[index] == sorted_codes + step
    ahead = torch.where(found, index, torch.full_like(index, size))
    behind = torch.full((size + 1,), size, dtype=torch.int64, device=sorted_codes.device)
    behind[index[found]] = torch.arange(size, device=sorted_codes.device)[found]  # inverse map
    return torch.cat([ahead, ahead.new_full((1,), size)]), behind
