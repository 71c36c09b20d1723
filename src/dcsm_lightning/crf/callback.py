"""``DenseCRF``: the Lightning callback that adds ``"<name>+crf"`` masks to step outputs.

The callback form of :func:`~dcsm_lightning.crf.inference.crf_labels_from_maps` (kornia
style: the callback only calls the function), one image per worker process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping, MutableMapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from dcsm_lightning.crf.inference import _crf_kwargs, _dense_crf_numpy, _finish, _prepare
from dcsm_lightning.crf.workers import init_worker

__all__ = ["DenseCRF"]

_STAGES = ("validate", "test", "predict")


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
    other form are left alone, with a one-time warning, except in the validation loop inside
    ``fit``, where a module may skip segmentation to save time. The batch must be a mapping with
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
        """Add ``"<name>+crf"`` masks to a validation step's outputs (stage ``"validate"``).

        During ``fit`` a module may skip segmentation to save time: steps without maps are
        passed over silently there."""
        if "validate" not in self.stages:
            return
        if trainer.state.fn == "fit" and not _has_maps(outputs):
            return
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
        if not _has_maps(outputs):
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
        # init_worker: workers die with this process and freeze the GC (see crf/workers.py)
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=_pool_context(),
            initializer=init_worker,
            initargs=(os.getpid(),),
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


def _has_maps(outputs: Any) -> bool:
    """Whether a step output is a mutable mapping with ``"maps"`` and ``"candidates"``."""
    return isinstance(outputs, MutableMapping) and "maps" in outputs and "candidates" in outputs


def _devices_per_node(trainer: pl.Trainer) -> int:
    try:
        return max(1, int(trainer.num_devices))
    except (AttributeError, TypeError, ValueError):
        return 1
