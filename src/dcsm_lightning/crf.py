"""Fully connected CRF refinement (Shimoda & Yanai 2016, Sec. 3.4, Eq. 6-8).

Three doors onto one implementation (kornia style: the module only calls the function):

* :func:`dense_crf` - one image, probabilities of L labels -> label indices.
* :func:`crf_labels_from_maps` - one image's class maps -> dataset label ids (Eq. 7 + CRF).
* :class:`DenseCRF` - a Lightning callback adding ``"<name>+crf"`` masks to step outputs,
  one image per worker process.

The CRF is Kraehenbuehl & Koltun's (2011) mean-field inference as packaged by ``pydensecrf``
with the paper's settings: unary ``-log(max(p, 1e-5))`` of the map values as given (not
renormalised), Potts pairwise terms ``addPairwiseGaussian(sxy=3, compat=1)`` and
``addPairwiseBilateral(sxy=30, srgb=10, compat=1)``, 10 iterations, argmax of the marginals.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Mapping, MutableMapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pydensecrf.densecrf as dcrf
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from dcsm_lightning.segment import VOID, maps_to_probs

__all__ = ["DenseCRF", "crf_labels_from_maps", "dense_crf"]

_RANGE_TOL = 1e-6
_STAGES = ("validate", "test", "predict")


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


# --- the callback ----------------------------------------------------------------------------


def _pool_context() -> multiprocessing.context.BaseContext:
    """``fork`` where the platform has it, else ``spawn``.

    Measured on Linux (benchmarks/crf_speed.py, 2 cores): a 2-worker pool gives its first
    results after ~0.03 s with ``fork`` and ~3.7 s with ``spawn`` or ``forkserver`` (each
    worker re-imports torch and Lightning to unpickle the task; both also need an
    ``if __name__ == "__main__":`` guard in the user's script). Forking a process that holds
    CUDA or thread pools is safe only because the workers never call torch: they receive numpy
    arrays and run numpy + pydensecrf (no OpenMP). A forked child that runs torch ops after the
    parent used its OpenMP pool hangs (libgomp is not fork-safe; seen in tests/test_metrics.py),
    and a CUDA call would fail. Keep :func:`_dense_crf_numpy` free of torch.
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class DenseCRF(Callback):
    """Lightning callback adding CRF-refined masks to the step outputs (Sec. 3.4).

    The callback form of :func:`crf_labels_from_maps` (anomalib-style post-processor). In
    ``on_{validation,test,predict}_batch_end``, if the step returned a ``dict`` holding
    ``"maps"`` (``dict[str, float Tensor (B, K, H, W)]``, values in [0, 1]) and
    ``"candidates"`` (bool (B, K)), then for every map name and image it computes
    ``crf_labels_from_maps(batch["rgb"][i], maps[name][i], candidates[i], batch["valid"][i])``
    and stores the stack as ``outputs["masks"][name + "+crf"]`` (int64 (B, H, W) on the
    maps' device, 255 on padding), creating ``outputs["masks"]`` if absent. Outputs of any
    other form are left alone (with a one-time warning). The batch must be a mapping with
    ``"rgb"`` (uint8 (B, H, W, 3)) and optionally ``"valid"`` (bool (B, H, W)).

    The dict is mutated in place. Lightning 2.x calls every callback's ``on_*_batch_end``
    and then the LightningModule's own hook with the same ``outputs`` object
    (``lightning/pytorch/loops/evaluation_loop.py::_evaluation_step`` and
    ``prediction_loop.py::_predict_step``: ``_call_callback_hooks`` before
    ``_call_lightning_module_hook``), so a module can read the ``"+crf"`` masks in its own
    ``on_validation_batch_end`` (e.g. to update a metric). The ``validation_step`` itself runs
    before any CRF and cannot see them.

    The images of a batch run in a process pool (``ProcessPoolExecutor``, ``fork`` start
    method where available, see :func:`_pool_context`), created on the first batch and shut
    down at the end of each validation / test / predict loop, in ``teardown`` and in
    ``on_exception``, so the CRF time scales with cores. Results do not depend on
    ``num_workers``.

    Args:
        iterations, bilateral_sxy, bilateral_srgb, bilateral_compat, gaussian_sxy,
            gaussian_compat, clamp: as in :func:`dense_crf` (paper defaults).
        num_workers: worker processes. ``None`` = the cores available to this process divided
            by the devices (processes) per node, capped at the batch size of the first batch;
            ``0`` = run in this process (so does ``None`` when that resolves to 1).
        stages: where to act, any of ``"validate"`` (validation batches, also inside
            ``fit``), ``"test"``, ``"predict"``.

    Raises:
        ValueError: bad CRF parameters, negative ``num_workers`` or an unknown stage.
    """

    def __init__(
        self,
        iterations: int = 10,
        bilateral_sxy: float = 30.0,
        bilateral_srgb: float = 10.0,
        bilateral_compat: float = 1.0,
        gaussian_sxy: float = 3.0,
        gaussian_compat: float = 1.0,
        clamp: float = 1e-5,
        num_workers: int | None = None,
        stages: Sequence[str] = _STAGES,
    ) -> None:
        super().__init__()
        self.crf_kwargs = _crf_kwargs(
            {
                "iterations": iterations,
                "bilateral_sxy": bilateral_sxy,
                "bilateral_srgb": bilateral_srgb,
                "bilateral_compat": bilateral_compat,
                "gaussian_sxy": gaussian_sxy,
                "gaussian_compat": gaussian_compat,
                "clamp": clamp,
            }
        )
        if num_workers is not None and (
            isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0
        ):
            raise ValueError(
                f"Expected `num_workers` to be None or an int >= 0, got {num_workers!r}."
            )
        if isinstance(stages, str):
            stages = [stages]
        unknown = [s for s in stages if s not in _STAGES]
        if unknown:
            raise ValueError(f"Expected `stages` among {list(_STAGES)}, got unknown {unknown}.")
        self.num_workers = num_workers
        self.stages = list(stages)
        self._pool: Executor | None = None
        self._pool_workers = 0
        self._warned = False

    # Lightning hooks -------------------------------------------------------------------------

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Add ``"<name>+crf"`` masks to a validation step's outputs (stage ``"validate"``)."""
        if "validate" in self.stages:
            self.process(outputs, batch, _devices_per_node(trainer))

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Add ``"<name>+crf"`` masks to a test step's outputs (stage ``"test"``)."""
        if "test" in self.stages:
            self.process(outputs, batch, _devices_per_node(trainer))

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Add ``"<name>+crf"`` masks to a predict step's outputs (stage ``"predict"``)."""
        if "predict" in self.stages:
            self.process(outputs, batch, _devices_per_node(trainer))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Shut the pool down after each validation run: during ``fit`` idle forked workers
        would otherwise keep copy-on-write pages of the training process alive."""
        self.close()

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Shut the worker pool down after the test loop."""
        self.close()

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Shut the worker pool down after the predict loop."""
        self.close()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Shut the worker pool down at the end of fit / validate / test / predict."""
        self.close()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Shut the worker pool down when the run fails."""
        self.close()

    # the work --------------------------------------------------------------------------------

    def process(self, outputs: Any, batch: Any, processes_per_node: int = 1) -> None:
        """Compute the ``"+crf"`` masks of one batch and write them into ``outputs`` in place.

        Args:
            outputs: the step output; acted on only if it is a mutable mapping with ``"maps"``
                (dict name -> float (B, K, H, W)) and ``"candidates"`` (bool (B, K)).
            batch: mapping with ``"rgb"`` uint8 (B, H, W, 3) and optionally ``"valid"`` bool
                (B, H, W).
            processes_per_node: training processes sharing this machine's cores (for
                ``num_workers=None``).

        Raises:
            ValueError: the batch lacks ``"rgb"`` or the shapes / values break the contract.
        """
        if not (
            isinstance(outputs, MutableMapping) and "maps" in outputs and "candidates" in outputs
        ):
            if not self._warned:
                rank_zero_warn(
                    "DenseCRF: the step output is not a dict with 'maps' and 'candidates'; "
                    "no CRF masks are added."
                )
                self._warned = True
            return
        maps: Mapping[str, Tensor] = outputs["maps"]
        candidates: Tensor = outputs["candidates"]
        if not isinstance(batch, Mapping) or "rgb" not in batch:
            raise ValueError(
                "DenseCRF needs batch['rgb'] (uint8 B x H x W x 3); got a batch "
                f"{'with keys ' + str(list(batch)) if isinstance(batch, Mapping) else type(batch)}."
            )
        rgb, valid = batch["rgb"], batch.get("valid")
        if not maps:
            return
        for name, name_maps in maps.items():
            if not isinstance(name_maps, Tensor) or name_maps.ndim != 4:
                got = tuple(name_maps.shape) if isinstance(name_maps, Tensor) else type(name_maps)
                raise ValueError(
                    f"Expected outputs['maps'][{name!r}] of shape (B, K, H, W), got {got}."
                )
            if len(rgb) != len(name_maps) or len(candidates) != len(name_maps):
                raise ValueError(
                    f"Batch sizes differ: batch['rgb'] {len(rgb)}, outputs['maps'][{name!r}] "
                    f"{len(name_maps)}, outputs['candidates'] {len(candidates)}."
                )
        pool = self._get_pool(len(rgb), processes_per_node)
        pending = []  # (name, future or result, label ids, valid, shape), in submission order
        for name, name_maps in maps.items():
            for i in range(len(name_maps)):
                valid_i = None if valid is None else valid[i]
                rgb_np, probs_np, label_ids, _ = _prepare(
                    rgb[i], name_maps[i], candidates[i], valid_i
                )
                # submit at once, so the workers start while the next image is prepared
                if pool is None:
                    job = _dense_crf_numpy(rgb_np, probs_np, **self.crf_kwargs)
                else:
                    job = pool.submit(_dense_crf_numpy, rgb_np, probs_np, **self.crf_kwargs)
                pending.append((name, job, label_ids, valid_i, tuple(name_maps.shape[2:])))
        per_name: dict[str, list[Tensor]] = {}
        for name, job, label_ids, valid_i, shape in pending:
            index = job if pool is None else job.result()
            per_name.setdefault(name, []).append(_finish(index, label_ids, valid_i, shape))
        masks = outputs.setdefault("masks", {})
        for name, stack in per_name.items():
            masks[f"{name}+crf"] = torch.stack(stack)

    def _get_pool(self, batch_size: int, processes_per_node: int) -> Executor | None:
        if self._pool is not None:
            return self._pool
        if self.num_workers is None:
            workers = min(_available_cores() // max(1, processes_per_node), batch_size)
        else:
            workers = self.num_workers
        if workers <= 1 and self.num_workers != 1:
            return None
        # gc.freeze: the forked child never collects (nor finalises) the parent's objects
        self._pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=_pool_context(), initializer=gc.freeze
        )
        self._pool_workers = workers
        return self._pool

    def close(self) -> None:
        """Shut the worker pool down (it is re-created on the next batch if needed)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._pool_workers = 0

    def __getstate__(self) -> dict[str, Any]:  # a live pool cannot be pickled (ddp_spawn)
        state = self.__dict__.copy()
        state["_pool"] = None
        state["_pool_workers"] = 0
        return state

    def __del__(self) -> None:
        pool = self.__dict__.get("_pool")
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _devices_per_node(trainer: pl.Trainer) -> int:
    try:
        return max(1, int(trainer.num_devices))
    except (AttributeError, TypeError, ValueError):
        return 1
