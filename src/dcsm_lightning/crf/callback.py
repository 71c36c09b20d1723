"""``DenseCRF``: the Lightning callback that refines saliency masks with the dense CRF.

The callback form of :func:`~dcsm_lightning.crf.mean_field.crf_masks` (kornia style: the
callback only calls the public function and owns its worker pool).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from dcsm_lightning.crf.mean_field import CRFSettings, crf_refine
from dcsm_lightning.crf.settings import check_backend, resolve_backend
from dcsm_lightning.crf.workers import init_worker
from dcsm_lightning.data.adapter import SegmentationBatch
from dcsm_lightning.segmentation.labels import LabelProbs
from dcsm_lightning.segmentation.methods import check_part

__all__ = ["DenseCRF"]

_STAGES = ("validate", "test", "predict")
#: Held while a callback creates its worker pool (a lock attribute could not be pickled).
_POOL_LOCK = threading.Lock()


def _pool_context() -> multiprocessing.context.BaseContext:
    """``fork`` where the platform has it, else ``spawn``.

    Measured on Linux (benchmarks/crf_speed.py, 2 cores): a 2-worker pool gives its first
    results after ~0.03 s with ``fork`` and ~3.7 s with ``spawn`` or ``forkserver`` (each
    worker re-imports torch and Lightning to unpickle the task; both also need an
    ``if __name__ == "__main__":`` guard in the user's script). Forking a process that holds
    CUDA or thread pools is safe only because the workers never call torch: they receive numpy
    arrays and run numpy + pydensecrf (no OpenMP). A forked child that runs torch ops after the
    parent used its OpenMP pool hangs (libgomp is not fork-safe; seen in tests/test_metrics.py),
    and a CUDA call would fail. Keep
    :func:`~dcsm_lightning.crf.mean_field.dense_crf` on numpy input free of torch.
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class DenseCRF(Callback):
    """Lightning callback adding CRF-refined masks ``"<strategy>+<name>"`` (Sec. 3.4).

    A refinement step of :class:`~dcsm_lightning.SaliencySegmentation`: put both in
    ``Trainer(callbacks=[...])``, in any order. For each batch and strategy the segmentation
    calls :meth:`refine`, which runs :func:`~dcsm_lightning.crf.mean_field.crf_refine` on the
    batch's ``rgb`` / ``extent`` / ``valid`` and the strategy's Eq. 7 probabilities; the masks
    are evaluated, reported and written like any other method's (named
    ``method_name(strategy, name)``). Several instances with different names and settings
    run side by side on the same maps (``DenseCRF(name="crf5", settings={iterations: 5})``).

    With the pydensecrf backend the images of a batch run in a process pool
    (``ProcessPoolExecutor``, ``fork`` start method where available, see
    :func:`_pool_context`), created on the first batch and shut down at the end of each
    validation / test / predict loop, in ``teardown`` and in ``on_exception``, so the CRF
    time scales with cores. Results do not depend on ``num_workers``. With the torch backend
    the whole batch runs in one pass inside the step, on the device of the maps (the
    module's), without worker processes.

    Args:
        settings: the CRF parameters; default :class:`~dcsm_lightning.crf.CRFSettings`
            (the paper's). In YAML: ``settings: {iterations: 5}``.
        num_workers: worker processes. ``None`` = the cores available to this process divided
            by the devices (processes) per node, capped at the batch size of the first batch;
            ``0`` = run in this process (so does ``None`` when that resolves to 1).
        stages: where to act, any of ``"validate"`` (validation batches, also inside
            ``fit``), ``"test"``, ``"predict"``.
        name: the refinement step's name: masks are called ``"<strategy>+<name>"``.
        backend: ``"auto"`` (torch for maps on an accelerator, pydensecrf on the CPU, see
            :func:`~dcsm_lightning.crf.settings.resolve_backend`), ``"pydensecrf"`` or
            ``"torch"``. In YAML: ``backend: torch``.

    Raises:
        ValueError: negative ``num_workers``, an unknown stage or backend, or a ``name`` with
            ``+`` or ``/``.
    """

    def __init__(
        self,
        settings: CRFSettings | None = None,
        num_workers: int | None = None,
        stages: Sequence[str] = _STAGES,
        name: str = "crf",
        backend: str = "auto",
    ) -> None:
        super().__init__()
        #: the refinement step's name (``method_name(strategy, name)``).
        self.name = check_part(name, "refinement step")
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
        self.settings = CRFSettings() if settings is None else settings
        self.num_workers = num_workers
        self.stages = list(stages)
        self.backend = check_backend(backend)
        self._pool: Executor | None = None
        self._pool_workers = 0

    def refine(
        self,
        trainer: pl.Trainer | None,
        stage: str,
        batch: SegmentationBatch,
        probs: LabelProbs,
        settings: CRFSettings | None = None,
    ) -> Tensor | None:
        """CRF masks int64 (B, S, S) of one strategy's maps, or None outside ``stages``.

        Safe to call from several threads at once (``tune`` scores CRF variants so): the
        worker pool is shared, and ``settings`` gives a call its own parameters.

        Args:
            trainer: the running trainer (its devices per node size the pool), or None.
            stage: ``"validate"``, ``"test"`` or ``"predict"``.
            batch: the adapted batch (``rgb`` uint8 (B, S, S, 3), ``extent`` (B, 2),
                ``valid`` bool or None).
            probs: the strategy's Eq. 7 probabilities
                (:func:`~dcsm_lightning.segmentation.labels.label_probs`: maps (B, K, S, S)
                in [0, 1], candidates (B, K), background).
            settings: the parameters of this call; None = :attr:`settings`.
        """
        if stage not in self.stages:
            return None
        backend = resolve_backend(self.backend, probs.maps.device)
        pool = (
            self._get_pool(len(batch), _devices_per_node(trainer)) if backend != "torch" else None
        )
        chosen = self.settings if settings is None else settings
        return crf_refine(batch.rgb, probs, batch.extent, batch.valid, chosen, pool, backend)

    # Lightning hooks: the pool's life -------------------------------------------------------

    def _close_hook(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any, **__: Any
    ) -> None:
        self.close()

    #: The pool is shut down at the end of each validation / test / predict loop (during
    #: ``fit`` idle forked workers would otherwise keep copy-on-write pages of the training
    #: process alive), in ``teardown`` and when the run fails (``on_exception``).
    on_validation_end = on_test_end = on_predict_end = teardown = on_exception = _close_hook

    def _get_pool(self, batch_size: int, processes_per_node: int) -> Executor | None:
        with _POOL_LOCK:  # two threads refining at once share one pool
            if self._pool is None:
                self._pool = self._new_pool(batch_size, processes_per_node)
            return self._pool

    def _new_pool(self, batch_size: int, processes_per_node: int) -> Executor | None:
        if self.num_workers is None:
            workers = min(_available_cores() // max(1, processes_per_node), batch_size)
        else:
            workers = self.num_workers
        if workers <= 1 and self.num_workers != 1:
            return None
        self._pool_workers = workers
        # init_worker: workers die with this process and freeze the GC (see crf/workers.py)
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=_pool_context(),
            initializer=init_worker,
            initargs=(os.getpid(),),
        )

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


def _devices_per_node(trainer: pl.Trainer | None) -> int:
    try:
        return max(1, int(trainer.num_devices))  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError):
        return 1
