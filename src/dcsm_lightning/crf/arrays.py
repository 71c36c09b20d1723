"""The arrays :func:`~dcsm_lightning.crf.dense_crf` takes: their checks, and the numpy /
torch conversions around pydensecrf (the labels come back in the type ``probs`` came in)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["as_input_type", "check_crf_inputs", "check_probs_values", "to_numpy"]

_RANGE_TOL = 1e-6


def to_numpy(x: np.ndarray | Tensor) -> np.ndarray:
    """``x`` as a numpy array (a tensor is detached and moved to the CPU)."""
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def check_crf_inputs(rgb: np.ndarray | Tensor, probs: np.ndarray | Tensor) -> None:
    """Raise ValueError unless ``rgb`` (H, W, 3) uint8 and ``probs`` (L, H, W) floating fit
    :func:`~dcsm_lightning.crf.dense_crf` (types, shapes, dtypes)."""
    for name, value in (("rgb", rgb), ("probs", probs)):
        if not isinstance(value, (np.ndarray, Tensor)):
            kind = type(value).__name__
            raise ValueError(f"Expected `{name}` to be a numpy array or torch.Tensor, got {kind}.")
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"Expected `rgb` of shape (H, W, 3), got shape {tuple(rgb.shape)}.")
    if rgb.dtype not in (np.uint8, torch.uint8):
        raise ValueError(f"Expected `rgb` of dtype uint8, got {rgb.dtype}.")
    if probs.ndim != 3 or probs.shape[0] < 1:
        raise ValueError(
            f"Expected `probs` of shape (L, H, W) with L >= 1, got shape {tuple(probs.shape)}."
        )
    floating = (
        probs.is_floating_point()
        if isinstance(probs, Tensor)
        else (np.issubdtype(probs.dtype, np.floating))
    )
    if not floating:
        raise ValueError(f"Expected `probs` of a floating dtype, got {probs.dtype}.")
    if tuple(probs.shape[1:]) != tuple(rgb.shape[:2]):
        raise ValueError(
            f"Expected `probs` of shape (L, H, W) with (H, W) = {tuple(rgb.shape[:2])} of `rgb`, "
            f"got shape {tuple(probs.shape)}."
        )


def check_probs_values(probs: np.ndarray | Tensor) -> None:
    """Raise ValueError if ``probs`` holds NaN or values outside [0, 1] (1e-6 tolerance)."""
    if (probs.numel() if isinstance(probs, Tensor) else probs.size) == 0:
        return
    if bool((probs.isnan() if isinstance(probs, Tensor) else np.isnan(probs)).any()):
        raise ValueError("Expected `probs` without NaN values, found NaN.")
    lo, hi = float(probs.min()), float(probs.max())
    if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise ValueError(f"Expected `probs` values in [0, 1], got values in [{lo:.6g}, {hi:.6g}].")


def as_input_type(labels: np.ndarray | Tensor, probs: np.ndarray | Tensor) -> np.ndarray | Tensor:
    """Labels as a tensor on the device of ``probs`` if it is a tensor, else as numpy."""
    if isinstance(probs, Tensor):
        return torch.as_tensor(labels).to(probs.device)
    return to_numpy(labels)
