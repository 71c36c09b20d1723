"""Dense CRF inference on one image (Shimoda & Yanai 2016, Sec. 3.4, Eq. 6-8).

* :func:`dense_crf` - probabilities of L labels -> label indices.
* :func:`crf_labels_from_maps` - class maps -> dataset label ids (Eq. 7 + CRF).

The CRF is Kraehenbuehl & Koltun's (2011) mean-field inference as packaged by ``pydensecrf``
with the paper's settings: unary ``-log(max(p, 1e-5))`` of the map values as given (not
renormalised), Potts pairwise terms ``addPairwiseGaussian(sxy=3, compat=1)`` and
``addPairwiseBilateral(sxy=30, srgb=10, compat=1)``, 10 iterations, argmax of the marginals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pydensecrf.densecrf as dcrf
import torch
from torch import Tensor

from dcsm_lightning.segment import VOID, maps_to_probs

__all__ = ["crf_labels_from_maps", "dense_crf"]

_RANGE_TOL = 1e-6


def _to_numpy(x: np.ndarray | Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def _check_crf_args(
    iterations: int,
    bilateral_sxy: float,
    bilateral_srgb: float,
    bilateral_compat: float,
    gaussian_sxy: float,
    gaussian_compat: float,
    clamp: float,
) -> None:
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"Expected `iterations` to be an int >= 0, got {iterations!r}.")
    for name, value in (
        ("bilateral_sxy", bilateral_sxy),
        ("bilateral_srgb", bilateral_srgb),
        ("gaussian_sxy", gaussian_sxy),
        ("clamp", clamp),
    ):
        if not isinstance(value, (int, float)) or not value > 0 or not np.isfinite(value):
            raise ValueError(f"Expected `{name}` to be a finite number > 0, got {value!r}.")
    if not 0 < clamp <= 1:
        raise ValueError(f"Expected `clamp` in (0, 1], got {clamp!r}.")
    for name, value in (
        ("bilateral_compat", bilateral_compat),
        ("gaussian_compat", gaussian_compat),
    ):
        if not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f"Expected `{name}` to be a finite number, got {value!r}.")


def _check_image(rgb: np.ndarray | Tensor, probs: np.ndarray | Tensor) -> None:
    """Contract of :func:`dense_crf`'s array arguments (shapes, dtypes, NaN, range)."""
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


def _check_probs_values(probs: np.ndarray) -> None:
    if probs.size == 0:
        return
    if np.isnan(probs).any():
        raise ValueError("Expected `probs` without NaN values, found NaN.")
    lo, hi = probs.min(), probs.max()
    if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise ValueError(f"Expected `probs` values in [0, 1], got values in [{lo:.6g}, {hi:.6g}].")


def _dense_crf_numpy(
    rgb: np.ndarray,
    probs: np.ndarray,
    iterations: int = 10,
    bilateral_sxy: float = 30.0,
    bilateral_srgb: float = 10.0,
    bilateral_compat: float = 1.0,
    gaussian_sxy: float = 3.0,
    gaussian_compat: float = 1.0,
    clamp: float = 1e-5,
) -> np.ndarray:
    """The CRF itself on checked numpy arrays (also the worker-process entry point).

    ``rgb`` uint8 (H, W, 3), ``probs`` float (L, H, W) -> int64 (H, W) in [0, L).
    """
    n_labels, height, width = probs.shape
    if n_labels == 1 or height == 0 or width == 0:  # nothing to decide
        return np.zeros((height, width), dtype=np.int64)
    # Same arithmetic as pydensecrf.utils.unary_from_softmax(probs, clip=clamp): clip in the
    # input dtype, -log, cast to float32. No renormalisation (the paper's -log Mhat).
    unary = -np.log(np.clip(probs, clamp, 1.0)).reshape(n_labels, -1).astype(np.float32)
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    crf.addPairwiseBilateral(
        sxy=bilateral_sxy,
        srgb=bilateral_srgb,
        rgbim=np.ascontiguousarray(rgb),
        compat=bilateral_compat,
    )
    marginals = np.asarray(crf.inference(iterations))
    return np.argmax(marginals, axis=0).reshape(height, width).astype(np.int64)


def dense_crf(
    rgb: np.ndarray | Tensor,
    probs: np.ndarray | Tensor,
    *,
    iterations: int = 10,
    bilateral_sxy: float = 30.0,
    bilateral_srgb: float = 10.0,
    bilateral_compat: float = 1.0,
    gaussian_sxy: float = 3.0,
    gaussian_compat: float = 1.0,
    clamp: float = 1e-5,
) -> np.ndarray | Tensor:
    """Fully connected CRF over one image (Eq. 6-8, Kraehenbuehl & Koltun 2011).

    Energy ``E(x) = sum_i -log(max(p_i(x_i), clamp)) + sum_{i<j} [x_i != x_j] k(f_i, f_j)`` with
    ``k = bilateral_compat * exp(-|p_i-p_j|^2 / 2 bilateral_sxy^2 - |I_i-I_j|^2 / 2
    bilateral_srgb^2) + gaussian_compat * exp(-|p_i-p_j|^2 / 2 gaussian_sxy^2)``, minimised by
    ``iterations`` steps of mean-field inference; the result is the argmax of the marginals.
    Gives exactly the labels of calling ``pydensecrf`` by hand (``DenseCRF2D``, unary
    ``unary_from_softmax(probs, clip=clamp)``, ``addPairwiseGaussian`` then
    ``addPairwiseBilateral``, ``inference``, ``argmax``).

    Args:
        rgb: uint8 image of shape (H, W, 3), numpy or torch (any device, any strides).
        probs: float array of shape (L, H, W) with values in [0, 1] (1e-6 outside tolerated),
            numpy or torch. Used as given: rows are NOT renormalised to sum to 1, the unary of
            label l is ``-log(max(probs[l], clamp))`` (values above 1 are clipped to 1).
            Rescaling a pixel's probabilities only adds a constant to its unaries, which
            mean-field inference cancels, so renormalising would matter only via the clamp.
        iterations: mean-field iterations (paper: 10).
        bilateral_sxy: position scale of the appearance kernel in pixels (paper: 30).
        bilateral_srgb: colour scale of the appearance kernel in 0-255 units (paper: 10).
        bilateral_compat: weight of the appearance kernel (paper: 1).
        gaussian_sxy: position scale of the smoothness kernel in pixels (paper: 3).
        gaussian_compat: weight of the smoothness kernel (paper: 1).
        clamp: lower bound on probabilities before the log (paper: 1e-5).

    Returns:
        int64 label indices of shape (H, W) with values in [0, L): a torch tensor on the device
        of ``probs`` if ``probs`` is a tensor, else a numpy array.

    Raises:
        ValueError: ``rgb`` not uint8 (H, W, 3); ``probs`` not float (L, H, W); sizes differ;
            NaN or values outside [0, 1] in ``probs``; bad CRF parameters.
    """
    _check_image(rgb, probs)
    _check_crf_args(
        iterations,
        bilateral_sxy,
        bilateral_srgb,
        bilateral_compat,
        gaussian_sxy,
        gaussian_compat,
        clamp,
    )
    probs_np = _to_numpy(probs)
    _check_probs_values(probs_np)
    labels = _dense_crf_numpy(
        _to_numpy(rgb),
        probs_np,
        iterations,
        bilateral_sxy,
        bilateral_srgb,
        bilateral_compat,
        gaussian_sxy,
        gaussian_compat,
        clamp,
    )
    if isinstance(probs, Tensor):
        return torch.from_numpy(labels).to(probs.device)
    return labels


# --- maps -> dataset ids, split in three so the callback can run the middle in a pool -------


def _valid_box(valid: Tensor | None, height: int, width: int) -> tuple[int, int]:
    """Height and width of the bounding box of ``valid`` anchored at the top-left corner."""
    if valid is None:
        return height, width
    rows = valid.any(dim=1).nonzero()
    cols = valid.any(dim=0).nonzero()
    if rows.numel() == 0:
        return 0, 0
    return int(rows.max()) + 1, int(cols.max()) + 1


def _prepare(
    rgb: np.ndarray | Tensor, maps: Tensor, candidates: Tensor, valid: Tensor | None
) -> tuple[np.ndarray, np.ndarray, Tensor, tuple[int, int]]:
    """Checks, Eq. 7 and cropping: -> (rgb crop, probs crop, label ids, (h, w) of the crop)."""
    if not isinstance(maps, Tensor) or maps.ndim != 3:
        raise ValueError(
            f"Expected `maps` to be a tensor of shape (K, H, W), got "
            f"{tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__}."
        )
    if valid is not None and (
        not isinstance(valid, Tensor)
        or valid.dtype != torch.bool
        or tuple(valid.shape) != tuple(maps.shape[1:])
    ):
        got = f"{valid.dtype} {tuple(valid.shape)}" if isinstance(valid, Tensor) else type(valid)
        raise ValueError(
            f"Expected `valid` to be a bool tensor of shape {tuple(maps.shape[1:])}, got {got}."
        )
    probs, label_ids = maps_to_probs(maps, candidates)  # checks maps / candidates
    _check_image(rgb, probs)
    h, w = _valid_box(valid, *maps.shape[1:])
    rgb_np = np.ascontiguousarray(_to_numpy(rgb[:h, :w]))
    probs_np = np.ascontiguousarray(_to_numpy(probs[:, :h, :w]))
    return rgb_np, probs_np, label_ids, (h, w)


def _finish(
    index: np.ndarray, label_ids: Tensor, valid: Tensor | None, shape: tuple[int, int]
) -> Tensor:
    """CRF label indices of the crop -> dataset ids of the full image, VOID outside ``valid``."""
    out = torch.full(shape, VOID, dtype=torch.int64, device=label_ids.device)
    h, w = index.shape
    out[:h, :w] = label_ids[torch.from_numpy(index).to(label_ids.device)]
    if valid is not None:
        out.masked_fill_(~valid.to(out.device), VOID)
    return out


def crf_labels_from_maps(
    rgb: np.ndarray | Tensor,
    maps: Tensor,
    candidates: Tensor,
    valid: Tensor | None = None,
    **crf_kwargs: Any,
) -> Tensor:
    """Class maps of one image -> CRF-refined label map in dataset ids (Sec. 3.4).

    Builds background + candidate probabilities with :func:`~dcsm_lightning.segment.maps_to_probs`
    (Eq. 7), runs :func:`dense_crf` and maps the label indices back to dataset ids. With
    ``valid``, the CRF runs only on the bounding box of the valid pixels (the top-left
    rectangle of a letterboxed image), so padding never influences it; every pixel outside
    ``valid`` is :data:`~dcsm_lightning.segment.VOID` (255).

    Args:
        rgb: uint8 image of shape (H, W, 3), numpy or torch.
        maps: float tensor of shape (K, H, W), values in [0, 1].
        candidates: bool tensor of shape (K,).
        valid: optional bool tensor of shape (H, W); False on padding.
        **crf_kwargs: keyword arguments of :func:`dense_crf` (``iterations``, ``bilateral_sxy``,
            ``bilateral_srgb``, ``bilateral_compat``, ``gaussian_sxy``, ``gaussian_compat``,
            ``clamp``).

    Returns:
        int64 tensor of shape (H, W) on the device of ``maps``: 0 = background, class ``k`` ->
        ``k + 1``, 255 outside ``valid``.

    Raises:
        TypeError: unknown keyword in ``crf_kwargs``.
        ValueError: bad shapes, dtypes or values (see :func:`dense_crf` and
            :func:`~dcsm_lightning.segment.maps_to_probs`).
    """
    kwargs = _crf_kwargs(crf_kwargs)
    rgb_np, probs_np, label_ids, _ = _prepare(rgb, maps, candidates, valid)
    index = _dense_crf_numpy(rgb_np, probs_np, **kwargs)
    return _finish(index, label_ids, valid, tuple(maps.shape[1:]))


_CRF_DEFAULTS: dict[str, Any] = {
    "iterations": 10,
    "bilateral_sxy": 30.0,
    "bilateral_srgb": 10.0,
    "bilateral_compat": 1.0,
    "gaussian_sxy": 3.0,
    "gaussian_compat": 1.0,
    "clamp": 1e-5,
}


def _crf_kwargs(overrides: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(overrides) - set(_CRF_DEFAULTS)
    if unknown:
        raise TypeError(
            f"Unknown CRF argument(s) {sorted(unknown)}; expected some of {list(_CRF_DEFAULTS)}."
        )
    kwargs = {**_CRF_DEFAULTS, **overrides}
    _check_crf_args(**kwargs)
    return kwargs
