"""``configure_optimizers`` from the optimizer / scheduler factories LightningCLI injects."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable


def build_optimizers(
    parameters: Iterable[torch.nn.Parameter],
    optimizer: OptimizerCallable | None,
    lr_scheduler: LRSchedulerCallable | None,
    default: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer],
) -> Any:
    """The return value of ``configure_optimizers`` for the trainable ``parameters``.

    Args:
        optimizer: factory ``params -> Optimizer``; None: ``default``.
        lr_scheduler: optional factory ``Optimizer -> LRScheduler``.
        default: the module's default optimizer factory.

    Returns:
        the optimizer, or ``{"optimizer": ..., "lr_scheduler": ...}`` with a scheduler.
    """
    params = [p for p in parameters if p.requires_grad]
    built = (optimizer or default)(params)
    if lr_scheduler is None:
        return built
    return {"optimizer": built, "lr_scheduler": lr_scheduler(built)}
