"""The paper's equations, one small function each (Shimoda & Yanai 2016, Sec. 3.3).

Shapes: a "map" tensor is ``... x H x W``; candidate-indexed tensors are B x N x H x W with a
bool B x N mask ``valid`` saying which entries are real candidates (N may be K, with
``valid`` the candidate mask, or the number of candidate slots).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Normalize = Literal["max", "none"]


def max_abs_over_channels(grad: torch.Tensor) -> torch.Tensor:
    """Eq. 3, channel step: ``M(x, y) = max_k |v(x, y, k)|``.

    Args:
        grad: ``... x C x h x w`` derivatives of a class score w.r.t. a feature map (or image).

    Returns:
        ``... x h x w``, non-negative.
    """
    return grad.abs().amax(dim=-3)


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Eq. 3, resize step: bilinear (``align_corners=False``) resize of ``... x h x w`` maps.

    Returns the input itself when it already has that size.
    """
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    out = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size)


def subtract_other_candidates(maps: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Eq. 4: ``Mtilde^c(x, y) = sum_{c' in C, c' != c} max(M^c(x, y) - M^c'(x, y), 0)``.

    ``C`` is the image's candidate set. A candidate with no other candidate keeps its raw map
    (the paper's N = 0 case, ``Mtilde = M``); entries that are not candidates become 0.

    Args:
        maps: float B x N x H x W raw maps ``M`` (one per candidate entry).
        valid: bool B x N, which entries are candidates.

    Returns:
        float B x N x H x W, non-negative where ``maps`` is.
    """
    out = torch.zeros_like(maps)
    for j in range(maps.shape[1]):
        if not bool(valid[:, j].any()):
            continue
        # j == c contributes max(0, 0) = 0, so it need not be skipped.
        out += (maps - maps[:, j : j + 1]).clamp(min=0) * valid[:, j, None, None, None]
    alone = valid & (valid.sum(1, keepdim=True) <= 1)
    out = torch.where(alone[..., None, None], maps, out)
    return out * valid[..., None, None]


def normalize_by_max(maps: torch.Tensor, normalize: Normalize = "max") -> torch.Tensor:
    """Divide each ``H x W`` map by its own spatial maximum (``"max"``) or leave it (``"none"``).

    A map whose maximum is not positive is left unchanged (a zero map stays zero).
    """
    if normalize == "none":
        return maps
    if normalize != "max":
        raise ValueError(f"normalize must be 'max' or 'none', got {normalize!r}")
    peak = maps.amax(dim=(-2, -1), keepdim=True)
    return maps / torch.where(peak > 0, peak, torch.ones_like(peak))


def tanh_normalize(maps: torch.Tensor, alpha: float, normalize: Normalize = "max") -> torch.Tensor:
    """Eq. 5, per-map term: ``tanh(alpha * Mtilde / max_{x,y} Mtilde)``.

    The division by the map's own maximum (``normalize="max"``) is the paper's display
    normalisation, applied before the tanh so that ``alpha`` does not depend on the gradients'
    scale; ``normalize="none"`` gives ``tanh(alpha * Mtilde)``.

    Args:
        maps: float ``... x H x W``, non-negative.
        alpha: tanh gain (3 for DCSM, 8 for Simonyan in the paper).

    Returns:
        float ``... x H x W`` in [0, 1).
    """
    return torch.tanh(alpha * normalize_by_max(maps, normalize))


def average_maps(maps: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 5, aggregation: ``Mhat = 1 / (|S| |L|) sum_{j, i} tanh(...)`` over the given terms."""
    if not maps:
        raise ValueError("average_maps needs at least one map")
    return torch.stack(maps).mean(0)


def positive_pair_differences(
    maps: torch.Tensor,
    valid: torch.Tensor,
    active: torch.Tensor,
    alpha: float,
    normalize: Normalize = "max",
) -> torch.Tensor:
    """The authors' code's subtraction: ``sum_{c' != c} max(tanh(alpha * D / max D), 0)``.

    ``D = M^c - M^c'``.

    Each signed difference ``D`` of two candidates' maps is divided by its own spatial
    maximum (``normalize="max"``; a ``D`` with no positive value gives 0), passed through
    ``tanh(alpha * .)``, and its non-positive part set to 0; the results are summed over the
    other candidates ``c'``. Only ``active`` entries get a map (the classes above the
    threshold at this scale); every valid entry serves as a subtrahend. An active class with
    no other candidate gets ``tanh(alpha * M / max M)`` of its own map.

    Args:
        maps: float B x N x H x W raw maps ``M``.
        valid: bool B x N, the candidates (subtrahends).
        active: bool B x N, the entries that get a map (a subset of ``valid``).

    Returns:
        float B x N x H x W, non-negative, 0 where not ``active``.
    """
    out = torch.zeros_like(maps)
    for j in range(maps.shape[1]):
        if not bool(valid[:, j].any()):
            continue
        diff = maps - maps[:, j : j + 1]  # D for c' = slot j; zero (so 0 after the clamp) at c = j
        pair = torch.tanh(alpha * normalize_by_max(diff, normalize)).clamp(min=0)
        out += pair * valid[:, j, None, None, None]
    alone = valid & (valid.sum(1, keepdim=True) <= 1)
    out = torch.where(alone[..., None, None], tanh_normalize(maps, alpha, normalize), out)
    return out * active[..., None, None]
