"""Dense CRF inference on one image (Shimoda & Yanai 2016, Sec. 3.4, Eq. 6-8).

* :class:`~dcsm_lightning.crf.settings.CRFSettings` - the CRF's parameters (paper defaults),
  used by everything below, and the ``backend`` that runs it (``"auto"``, ``"pydensecrf"``,
  ``"torch"``, see :func:`~dcsm_lightning.crf.settings.resolve_backend`).
* :func:`dense_crf` - probabilities of L labels -> label indices.
* :func:`crf_labels_from_maps` - class maps -> dataset label ids (Eq. 7 + CRF).
* :func:`crf_masks` - the same for a batch, optionally in a process pool.

The CRF is Kraehenbuehl & Koltun's (2011) mean-field inference as packaged by ``pydensecrf``
with the paper's settings: unary ``-log(max(p, 1e-5))`` of the map values as given (not
renormalised), Potts pairwise terms ``addPairwiseGaussian(sxy=3, compat=1)`` and
``addPairwiseBilateral(sxy=30, srgb=10, compat=1)``, 10 iterations, argmax of the marginals.
The ``"torch"`` backend (:func:`~dcsm_lightning.crf.torch_backend.dense_crf_batch`) runs the
same inference in torch, on the data's device and a batch of images at once.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future
from typing import Any

import numpy as np
import pydensecrf.densecrf as dcrf
import torch
from torch import Tensor

from dcsm_lightning.crf.arrays import as_input_type, check_crf_inputs, check_probs_values, to_numpy
from dcsm_lightning.crf.settings import CRFSettings, resolve_backend
from dcsm_lightning.crf.torch_backend import dense_crf_batch
from dcsm_lightning.data.transforms import letterbox_extents
from dcsm_lightning.palette import VOID
from dcsm_lightning.segmentation.labels import LabelProbs, label_probs

__all__ = ["CRFSettings", "crf_labels_from_maps", "crf_masks", "crf_refine", "dense_crf"]

def dense_crf(
    rgb: np.ndarray | Tensor,
    probs: np.ndarray | Tensor,
    settings: CRFSettings | None = None,
    backend: str = "auto",
) -> np.ndarray | Tensor:
    """Fully connected CRF over one image (Eq. 6-8, Kraehenbuehl & Koltun 2011).

    Energy ``E(x) = sum_i -log(max(p_i(x_i), clamp)) + sum_{i<j} [x_i != x_j] k(f_i, f_j)`` with
    ``k = bilateral_compat * exp(-|p_i-p_j|^2 / 2 bilateral_sxy^2 - |I_i-I_j|^2 / 2
    bilateral_srgb^2) + gaussian_compat * exp(-|p_i-p_j|^2 / 2 gaussian_sxy^2)``, minimised by
    ``iterations`` steps of mean-field inference; the result is the argmax of the marginals.
    Gives exactly the labels of calling ``pydensecrf`` by hand (``DenseCRF2D``, unary
    ``unary_from_softmax(probs, clip=clamp)``, ``addPairwiseGaussian`` then
    ``addPairwiseBilateral``, ``inference``, ``argmax``). On numpy input the pydensecrf
    backend runs numpy and pydensecrf only (no torch), so it is safe in forked worker
    processes. The torch backend gives the same labels up to the float rounding of its filter
    (agreement figures: ``benchmarks/crf_agreement.py``) and runs on the device of ``probs``
    (numpy: the CPU).

    Args:
        rgb: uint8 image of shape (H, W, 3), numpy or torch (any device, any strides,
            read-only arrays such as ``np.asarray(PIL image)`` included).
        probs: float array of shape (L, H, W) with values in [0, 1] (1e-6 outside tolerated),
            numpy or torch. Used as given: rows are NOT renormalised to sum to 1, the unary of
            label l is ``-log(max(probs[l], clamp))`` (values above 1 are clipped to 1).
            Rescaling a pixel's probabilities only adds a constant to its unaries, which
            mean-field inference cancels, so renormalising would matter only via the clamp.
        settings: the CRF parameters; default :class:`CRFSettings` (the paper's).
        backend: ``"pydensecrf"``, ``"torch"`` or ``"auto"`` (torch on an accelerator,
            pydensecrf on the CPU; see :func:`~dcsm_lightning.crf.settings.resolve_backend`).

    Returns:
        int64 label indices of shape (H, W) with values in [0, L): a torch tensor on the device
        of ``probs`` if ``probs`` is a tensor, else a numpy array.

    Raises:
        ValueError: ``rgb`` not uint8 (H, W, 3); ``probs`` not float (L, H, W); sizes differ;
            NaN or values outside [0, 1] in ``probs``; an unknown ``backend``.
    """
    check_crf_inputs(rgb, probs)
    device = probs.device if isinstance(probs, Tensor) else torch.device("cpu")
    if resolve_backend(backend, device) == "torch":
        probs_t = torch.as_tensor(probs)
        check_probs_values(probs_t)
        labels_t = dense_crf_batch([torch.as_tensor(rgb)], [probs_t], settings)[0]
        return as_input_type(labels_t, probs)
    probs_np = to_numpy(probs)
    check_probs_values(probs_np)
    return as_input_type(_mean_field(to_numpy(rgb), probs_np, settings), probs)


def _mean_field(
    rgb_np: np.ndarray, probs_np: np.ndarray, settings: CRFSettings | None
) -> np.ndarray:
    """:func:`dense_crf` on checked numpy arrays (no torch: safe in forked workers)."""
    settings = CRFSettings() if settings is None else settings
    n_labels, height, width = probs_np.shape
    if n_labels == 1 or height == 0 or width == 0:  # nothing to decide
        return np.zeros((height, width), dtype=np.int64)
    # Same arithmetic as pydensecrf.utils.unary_from_softmax(probs, clip=clamp): clip in the
    # input dtype, -log, cast to float32. No renormalisation (the paper's -log Mhat).
    unary = -np.log(np.clip(probs_np, settings.clamp, 1.0)).reshape(n_labels, -1)
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary.astype(np.float32)))
    crf.addPairwiseGaussian(sxy=settings.gaussian_sxy, compat=settings.gaussian_compat)
    crf.addPairwiseBilateral(
        sxy=settings.bilateral_sxy,
        srgb=settings.bilateral_srgb,
        rgbim=np.require(rgb_np, requirements=("C", "W")),  # a read-only view is copied
        compat=settings.bilateral_compat,
    )
    marginals = np.asarray(crf.inference(settings.iterations))
    return np.argmax(marginals, axis=0).reshape(height, width).astype(np.int64)


# --- maps -> dataset ids: Eq. 7 once, crop, dense_crf (maybe in a worker), finish ---------


def _finish(
    index: np.ndarray | Tensor, label_ids: Tensor, valid: Tensor | None, shape: tuple[int, int]
) -> Tensor:
    """CRF label indices of the crop -> dataset ids of the full image, VOID outside ``valid``."""
    out = torch.full(shape, VOID, dtype=torch.int64, device=label_ids.device)
    h, w = index.shape
    out[:h, :w] = label_ids[torch.as_tensor(index).to(label_ids.device)]
    if valid is not None:
        out.masked_fill_(~valid.to(out.device), VOID)
    return out


def crf_labels_from_maps(
    rgb: np.ndarray | Tensor,
    maps: Tensor,
    candidates: Tensor,
    valid: Tensor | None = None,
    settings: CRFSettings | None = None,
    backend: str = "auto",
) -> Tensor:
    """Class maps of one image -> CRF-refined label map in dataset ids (Sec. 3.4).

    Builds background + candidate probabilities (Eq. 7, as
    :func:`~dcsm_lightning.segmentation.labels.maps_to_probs`), runs :func:`dense_crf` and
    maps the label indices back to dataset ids. With ``valid``, the CRF runs only on the
    bounding box of the valid pixels (the top-left rectangle of a letterboxed image), so
    padding never influences it; every pixel outside ``valid`` is
    :data:`~dcsm_lightning.palette.VOID` (255).

    Args:
        rgb: uint8 image of shape (H, W, 3), numpy or torch.
        maps: float tensor of shape (K, H, W), values in [0, 1].
        candidates: bool tensor of shape (K,).
        valid: optional bool tensor of shape (H, W); False on padding.
        settings: the CRF parameters; default :class:`CRFSettings` (the paper's).
        backend: ``"pydensecrf"``, ``"torch"`` or ``"auto"`` (see :func:`dense_crf`).

    Returns:
        int64 tensor of shape (H, W) on the device of ``maps``: 0 = background, class ``k`` ->
        ``k + 1``, 255 outside ``valid``.

    Raises:
        ValueError: bad shapes, dtypes or values (see :func:`dense_crf` and
            :func:`~dcsm_lightning.segmentation.labels.maps_to_probs`).
    """
    if not isinstance(maps, Tensor) or maps.ndim != 3:
        raise ValueError(
            f"Expected `maps` to be a tensor of shape (K, H, W), got "
            f"{tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__}."
        )
    if not isinstance(rgb, (np.ndarray, Tensor)):
        check_crf_inputs(rgb, maps)  # raises: not an array
    rgb_t = torch.as_tensor(rgb)[None]
    valid_b = _batched(valid, maps)
    return crf_masks(rgb_t, maps[None], candidates[None], valid_b, settings, None, backend)[0]


def _batched(valid: Tensor | None, maps: Tensor) -> Tensor | None:
    """One image's ``valid`` (H, W) as a batch of one, checked against ``maps`` (K, H, W)."""
    if valid is None:
        return None
    if (
        not isinstance(valid, Tensor)
        or valid.dtype != torch.bool
        or tuple(valid.shape) != tuple(maps.shape[1:])
    ):
        got = f"{valid.dtype} {tuple(valid.shape)}" if isinstance(valid, Tensor) else type(valid)
        raise ValueError(
            f"Expected `valid` to be a bool tensor of shape {tuple(maps.shape[1:])}, got {got}."
        )
    return valid[None]


def crf_masks(
    rgb: Tensor,
    maps: Tensor,
    candidates: Tensor,
    valid: Tensor | None = None,
    settings: CRFSettings | None = None,
    executor: Executor | None = None,
    backend: str = "auto",
) -> Tensor:
    """:func:`crf_labels_from_maps` for a batch: one image per worker process (pydensecrf) or
    the whole batch in one pass on the device of ``maps`` (torch).

    Args:
        rgb: uint8 tensor of shape (B, H, W, 3).
        maps: float tensor of shape (B, K, H, W), values in [0, 1].
        candidates: bool tensor of shape (B, K).
        valid: optional bool tensor of shape (B, H, W); False on padding.
        settings: the CRF parameters; default :class:`CRFSettings` (the paper's).
        executor: where the pydensecrf backend's :func:`dense_crf` runs (e.g. a
            ``ProcessPoolExecutor``); None runs it here. Every image is submitted before the
            first result is awaited. Not used by the torch backend.
        backend: ``"pydensecrf"``, ``"torch"`` or ``"auto"`` (see :func:`dense_crf`); the
            torch backend refines all images in one
            :func:`~dcsm_lightning.crf.torch_backend.dense_crf_batch` call.

    Returns:
        int64 tensor of shape (B, H, W) on the device of ``maps``, dataset ids, 255 outside
        ``valid``; equal to stacking :func:`crf_labels_from_maps` per image.

    Raises:
        ValueError: batch sizes differ, or as :func:`crf_labels_from_maps`.
    """
    if not isinstance(maps, Tensor) or maps.ndim != 4:
        got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"Expected `maps` of shape (B, K, H, W), got {got}.")
    sizes = {"rgb": len(rgb), "maps": len(maps), "candidates": len(candidates)}
    if valid is not None:
        sizes["valid"] = len(valid)
    if len(set(sizes.values())) != 1:
        raise ValueError(f"Expected one batch size, got {sizes}.")
    probs = label_probs(maps, candidates, valid)
    full = torch.tensor([list(maps.shape[2:])], dtype=torch.int64).expand(len(maps), 2)
    extent = full if valid is None else letterbox_extents(valid, full, maps.shape[-1])
    return crf_refine(rgb, probs, extent, valid, settings, executor, backend)


def crf_refine(
    rgb: Tensor,
    probs: LabelProbs,
    extent: Tensor,
    valid: Tensor | None = None,
    settings: CRFSettings | None = None,
    executor: Executor | None = None,
    backend: str = "auto",
) -> Tensor:
    """The CRF of a batch whose Eq. 7 is computed already: what :func:`crf_masks` and
    :class:`~dcsm_lightning.crf.DenseCRF` run.

    Args:
        rgb: uint8 tensor of shape (B, H, W, 3).
        probs: :class:`~dcsm_lightning.segmentation.labels.LabelProbs` of the batch (checked
            maps (B, K, H, W), candidates, Eq. 7 background).
        extent: int (B, 2), (h, w) of each image's top-left rectangle the CRF runs on.
        valid: optional bool (B, H, W); pixels off it (and off the extent) become VOID.
        settings, executor, backend: as in :func:`crf_masks`.

    Returns:
        int64 tensor of shape (B, H, W) on the device of the maps, dataset ids.
    """
    shape = tuple(probs.maps.shape[2:])
    on_torch = resolve_backend(backend, probs.maps.device) == "torch"
    jobs, crops = [], []
    for i, (h, w) in enumerate(extent.tolist()):
        image_probs, label_ids = probs.image(i)
        check_crf_inputs(rgb[i], image_probs)
        if on_torch:  # all crops in one dense_crf_batch below
            job: Any = None
            crops.append((rgb[i, :h, :w], image_probs[:, :h, :w]))
        else:
            rgb_np = np.ascontiguousarray(to_numpy(rgb[i, :h, :w]))
            probs_np = np.ascontiguousarray(to_numpy(image_probs[:, :h, :w]))
            if executor is None:  # the maps were checked once, by label_probs
                job = _mean_field(rgb_np, probs_np, settings)
            else:  # submitted at once, so the workers start while the next image is prepared
                job = executor.submit(_mean_field, rgb_np, probs_np, settings)
        jobs.append((job, label_ids, None if valid is None else valid[i]))
    if on_torch:
        indices = dense_crf_batch([c[0] for c in crops], [c[1] for c in crops], settings)
        jobs = [(index, *rest) for index, (_, *rest) in zip(indices, jobs, strict=True)]
    return torch.stack(
        [
            _finish(job.result() if isinstance(job, Future) else job, label_ids, valid_i, shape)
            for job, label_ids, valid_i in jobs
        ]
    )
