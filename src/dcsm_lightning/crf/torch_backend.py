"""Dense CRF mean-field inference in torch: pydensecrf's ``DenseCRF2D`` on any device, in batches.

:func:`dense_crf_batch` runs the inference of :func:`~dcsm_lightning.crf.mean_field.dense_crf`
(the paper's Eq. 6-8) for several images at once on the device of their probabilities, with
the two Gaussian kernels filtered by a
:class:`~dcsm_lightning.crf.permutohedral.PermutohedralLattice`. It follows pydensecrf's
``DenseCRF2D`` as documented and implemented: features ``(x, y) / sxy`` for the smoothness
kernel and ``(x, y) / sxy, (r, g, b) / srgb`` for the appearance kernel (0-255 colours), each
kernel normalised symmetrically (``NORMALIZE_SYMMETRIC``, the default: ``n = 1 / sqrt(K 1)``,
filtered ``n * K(n * Q)``), Potts compatibility, and the update
``Q = softmax(-unary + sum_k w_k * n_k * K_k(n_k * Q))`` (pydensecrf's ``PottsCompatibility``
gives ``-w * filtered``, subtracted from ``-unary``), started from ``softmax(-unary)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dcsm_lightning.crf.permutohedral import PermutohedralLattice
from dcsm_lightning.crf.settings import CRFSettings

__all__ = ["GaussianKernel", "dense_crf_batch"]


class GaussianKernel:
    """One pairwise term: ``weight * n * K(n * q)`` with ``n = 1 / sqrt(K 1)`` (symmetric
    normalisation) and ``K`` the lattice's Gaussian filter over ``features``.

    Args:
        features: float tensor of shape (N, d): features divided by their widths.
        groups: optional int64 tensor of shape (N,): points of different groups never interact.
        weight: the Potts weight (``compat``).
    """

    def __init__(self, features: Tensor, groups: Tensor | None, weight: float) -> None:
        self.lattice = PermutohedralLattice(features, groups)
        ones = features.new_ones(len(features), 1, dtype=torch.float32)
        self.norm = (self.lattice(ones) + 1e-20).rsqrt()
        self.weight = weight

    def __call__(self, q: Tensor) -> Tensor:
        """Filter ``q`` float (N, L) -> float (N, L), weighted and normalised."""
        return self.weight * self.norm * self.lattice(self.norm * q)


def _features(rgb: Tensor, height: int, width: int, sxy: float, srgb: float | None) -> Tensor:
    """(h * w, 2) positions ``(x, y) / sxy``, with colours ``rgb / srgb`` appended if given."""
    device = rgb.device
    sxy32 = torch.tensor(sxy, dtype=torch.float32, device=device)
    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=device),
        torch.arange(width, dtype=torch.float32, device=device),
        indexing="ij",
    )
    parts = [(x / sxy32).reshape(-1, 1), (y / sxy32).reshape(-1, 1)]
    if srgb is not None:
        srgb32 = torch.tensor(srgb, dtype=torch.float32, device=device)
        parts.append(rgb[:height, :width].reshape(-1, 3).to(torch.float32) / srgb32)
    return torch.cat(parts, dim=1)


#: pixels per pass on the CPU: larger passes run slower per image (the lattice outgrows the
#: caches: 375 x 500 images, 1 thread: 2.8 s each alone, 4.0 s each six at once)
CPU_PASS_PIXELS = 2**18


def dense_crf_batch(
    rgb: Sequence[Tensor],
    probs: Sequence[Tensor],
    settings: CRFSettings | None = None,
    max_pixels: int | None = None,
) -> list[Tensor]:
    """:func:`~dcsm_lightning.crf.mean_field.dense_crf` for several images in one torch pass.

    The images may differ in size and in number of labels: their pixels form one lattice per
    kernel (the image index keeps them apart) and absent labels get probability exactly 0, so
    each image's result equals its result alone (up to float rounding of the batched sums).
    Runs on the device of ``probs[0]``; no worker processes. Consecutive images are grouped
    into passes of at most ``max_pixels`` pixels (an image larger than that is a pass alone).

    Args:
        rgb: B uint8 tensors of shape (H_b, W_b, 3) (a (B, H, W, 3) tensor works too).
        probs: B float tensors of shape (L_b, H_b, W_b) with values in [0, 1], used as given
            (unary ``-log(max(p, clamp))``, values above 1 clipped to 1, no renormalisation).
        settings: :class:`~dcsm_lightning.crf.mean_field.CRFSettings`; default the paper's.
        max_pixels: pixels per pass; None = :data:`CPU_PASS_PIXELS` on the CPU, the whole
            batch in one pass on an accelerator.

    Returns:
        B int64 tensors of shape (H_b, W_b), label indices in [0, L_b), on the device of
        ``probs[0]``.

    Raises:
        ValueError: numbers of images differ.
    """
    s = CRFSettings() if settings is None else settings
    if len(rgb) != len(probs):
        raise ValueError(f"Expected as many `rgb` as `probs`, got {len(rgb)} and {len(probs)}.")
    if len(probs) == 0:
        return []
    if max_pixels is None:
        max_pixels = CPU_PASS_PIXELS if probs[0].device.type == "cpu" else None
    out: list[Tensor] = []
    start = 0
    while start < len(probs):
        stop, pixels = start + 1, probs[start].shape[1] * probs[start].shape[2]
        while stop < len(probs) and (
            max_pixels is None or pixels + probs[stop].shape[1] * probs[stop].shape[2] <= max_pixels
        ):
            pixels += probs[stop].shape[1] * probs[stop].shape[2]
            stop += 1
        out += _one_pass(rgb[start:stop], probs[start:stop], s)
        start = stop
    return out


def _one_pass(rgb: Sequence[Tensor], probs: Sequence[Tensor], s: CRFSettings) -> list[Tensor]:
    """:func:`dense_crf_batch` of images that run together (one lattice per kernel)."""
    device = probs[0].device
    shapes = [tuple(p.shape) for p in probs]
    n_labels = max(shape[0] for shape in shapes)
    unary, gauss, bilateral, groups = [], [], [], []
    for b, (image, p) in enumerate(zip(rgb, probs, strict=True)):
        labels, height, width = p.shape
        image = torch.as_tensor(image, device=device)
        # pydensecrf.utils.unary_from_softmax: clip in the input dtype, -log, float32
        u = -torch.log(p.to(device).clamp(s.clamp, 1.0)).to(torch.float32).reshape(labels, -1).T
        absent = u.new_full((len(u), n_labels - labels), float("inf"))  # Q = 0 exactly
        unary.append(torch.cat([u, absent], dim=1))
        gauss.append(_features(image, height, width, s.gaussian_sxy, None))
        bilateral.append(_features(image, height, width, s.bilateral_sxy, s.bilateral_srgb))
        groups.append(torch.full((height * width,), b, dtype=torch.int64, device=device))
    unary_all = torch.cat(unary)
    if n_labels > 1 and len(unary_all) > 0 and s.iterations > 0:
        q = _mean_field(unary_all, torch.cat(gauss), torch.cat(bilateral), torch.cat(groups), s)
    else:
        q = -unary_all
    labels_all = q.argmax(1) if n_labels > 1 else q.new_zeros(len(q), dtype=torch.int64)
    sizes = [shape[1] * shape[2] for shape in shapes]
    return [
        part.reshape(shape[1:]) for part, shape in zip(labels_all.split(sizes), shapes, strict=True)
    ]


def _mean_field(
    unary: Tensor, gauss: Tensor, bilateral: Tensor, groups: Tensor, s: CRFSettings
) -> Tensor:
    """``iterations`` mean-field updates from ``softmax(-unary)``; -> marginals Q (N, L)."""
    kernels = [
        GaussianKernel(gauss, groups, s.gaussian_compat),
        GaussianKernel(bilateral, groups, s.bilateral_compat),
    ]
    q = _softmax(-unary)
    for _ in range(s.iterations):
        logits = -unary
        for kernel in kernels:
            logits = logits + kernel(q)
        q = _softmax(logits)
    return q


def _softmax(logits: Tensor) -> Tensor:
    """Softmax over labels of (N, L) logits (``-inf`` -> 0), as pydensecrf's ``expAndNormalize``
    (4x faster than ``torch.softmax`` for few labels on the CPU, measured)."""
    q = (logits - logits.amax(1, keepdim=True)).exp_()
    return q.div_(q.sum(1, keepdim=True))
