"""``configure_optimizers`` from the optimizer / scheduler factories LightningCLI injects."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from dcsm_lightning.models.schedules import planned_steps


def build_optimizers(
    parameters: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]],
    optimizer: OptimizerCallable | None,
    lr_scheduler: LRSchedulerCallable | None,
    default: Callable[[list[Any]], torch.optim.Optimizer],
    total_steps: Callable[[], float] | None = None,
) -> Any:
    """The return value of ``configure_optimizers`` for the trainable ``parameters``.

    Args:
        parameters: parameters, or parameter groups (dicts with ``"params"``) that may carry an
            ``"lr_factor"``: that group's learning rate is the optimizer's times the factor
            (set before the scheduler is built, so the scheduler scales it like the others).
            Parameters that do not require gradients and groups left empty are dropped.
        optimizer: factory ``params -> Optimizer``; None: ``default``.
        lr_scheduler: optional factory ``Optimizer -> LRScheduler``. A scheduler whose class
            has ``interval = "step"`` (:class:`~dcsm_lightning.models.WarmupCosineLR`) is
            stepped after every optimizer step, any other after every epoch.
        default: the module's default optimizer factory.
        total_steps: the run's optimizer steps, asked only by a scheduler that needs them
            (e.g. ``lambda: self.trainer.estimated_stepping_batches``).

    Returns:
        the optimizer; with a scheduler, the dict
        ``{"optimizer": ..., "lr_scheduler": {"scheduler": ..., "interval": ...}}``.
    """
    items = list(parameters)
    if items and isinstance(items[0], dict):
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in items]
        params: list[Any] = [g for g in groups if g["params"]]
    else:
        params = [p for p in items if p.requires_grad]
    built = (optimizer or default)(params)
    for group in built.param_groups:
        group["lr"] = group["lr"] * group.get("lr_factor", 1.0)
    if lr_scheduler is None:
        return built
    if total_steps is None:
        scheduler = lr_scheduler(built)
    else:
        with planned_steps(total_steps):
            scheduler = lr_scheduler(built)
    interval = getattr(scheduler, "interval", "epoch")
    return {"optimizer": built, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}
