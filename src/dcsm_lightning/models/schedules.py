"""``WarmupCosineLR``: a warm-up then a cosine decay, stepped per optimizer step, whose length
is the trainer's (``trainer.estimated_stepping_batches``) unless given.

In YAML (``MultiLabelFCN`` and ``SegmentationNet`` alike)::

    lr_scheduler:
      class_path: dcsm_lightning.models.WarmupCosineLR
      init_args: {warmup: 0.03, end_factor: 0.02}

The modules build it through :func:`~dcsm_lightning.models.optim.build_optimizers`, which lends
it the trainer's step count (:func:`planned_steps`) and steps it every optimizer step
(Lightning's ``"interval": "step"``), so the same config fits any dataset size, batch size,
``max_epochs`` or ``max_steps``. A LightningModule of your own passes
``total_steps=self.trainer.estimated_stepping_batches`` and ``"interval": "step"`` itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch.optim.lr_scheduler import OneCycleLR

_PLANNED_STEPS: ContextVar[Callable[[], float] | None] = ContextVar(
    "dcsm_lightning_planned_steps", default=None
)


@contextmanager
def planned_steps(count: Callable[[], float]) -> Iterator[None]:
    """Within the block, a :class:`WarmupCosineLR` built without ``total_steps`` asks ``count()``.

    Args:
        count: called at most once per scheduler built, e.g.
            ``lambda: trainer.estimated_stepping_batches`` (computed only when needed).
    """
    token = _PLANNED_STEPS.set(count)
    try:
        yield
    finally:
        _PLANNED_STEPS.reset(token)


def _resolve_total_steps(total_steps: int | None) -> int:
    if total_steps is None:
        count = _PLANNED_STEPS.get()
        if count is None:
            raise ValueError(
                "WarmupCosineLR needs total_steps: give it, or let MultiLabelFCN / "
                "SegmentationNet build it (they use trainer.estimated_stepping_batches)"
            )
        planned = count()
        if not math.isfinite(planned):
            raise ValueError(
                "WarmupCosineLR needs a finite training length: set trainer.max_epochs or "
                "trainer.max_steps"
            )
        total_steps = int(planned)
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return total_steps


class WarmupCosineLR(OneCycleLR):
    """Warm-up from ``start_factor`` x peak to the peak, then a cosine down to ``end_factor`` x
    peak, over ``total_steps`` optimizer steps (torch's ``OneCycleLR`` without momentum cycling).

    The peak of each parameter group is its learning rate when the scheduler is built (the
    optimizer's ``lr``). The warm-up is the first ``warmup`` fraction of the steps (cosine-shaped,
    as in ``OneCycleLR``). Lightning must step it per optimizer step: the class attribute
    ``interval = "step"`` tells :func:`~dcsm_lightning.models.optim.build_optimizers` so.

    Args:
        optimizer: the wrapped optimizer (its group ``lr`` values are the peaks).
        total_steps: optimizer steps of the whole run; None: the trainer's
            (see :func:`planned_steps`).
        warmup: fraction of the steps spent warming up, in [0, 1).
        start_factor: first learning rate / peak, in (0, 1].
        end_factor: last learning rate / peak, in (0, 1].

    A resumed run keeps its own length and takes only the position (the step reached) from
    the checkpoint, so resuming with a larger ``max_epochs`` stretches the schedule instead
    of stepping past its end.

    Raises:
        ValueError: a fraction out of range, ``total_steps`` < 1, or no ``total_steps`` known.
    """

    interval = "step"

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int | None = None,
        warmup: float = 0.03,
        start_factor: float = 0.04,
        end_factor: float = 0.02,
    ) -> None:
        if not 0.0 <= warmup < 1.0:
            raise ValueError(f"warmup must be a fraction in [0, 1), got {warmup}")
        for name, value in (("start_factor", start_factor), ("end_factor", end_factor)):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        super().__init__(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=_resolve_total_steps(total_steps),
            pct_start=warmup,
            anneal_strategy="cos",
            cycle_momentum=False,
            div_factor=1.0 / start_factor,
            final_div_factor=start_factor / end_factor,
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take the position (``last_epoch``) from ``state_dict``, keep this run's length."""
        super().load_state_dict({**self.state_dict(), "last_epoch": state_dict["last_epoch"]})
