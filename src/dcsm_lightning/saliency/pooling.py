"""Score pooling: a class score map B x K x h x w -> class scores B x K.

A classifier with a score-map head is trained through some global pooling (the paper's FCN:
global max pooling; many others: average pooling). The same pooling must turn the map into
the probabilities that pick candidates and are written to ``scores/*.json``, or they are
probabilities the model never produces. :func:`pool_scores` applies a pooling;
:func:`model_pool` finds the one to use: the option given, else the module's own
(an attribute ``score_pool``), else ``"max"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Union

import torch
from torch import nn

#: A pooling: ``"max"`` (global max), ``"avg"`` (global mean), ``"sum"`` (global sum: the
#: paper's backward seed, 1 at every position) or a callable B x K x h x w -> B x K.
Pool = Union[Literal["max", "avg", "sum"], Callable[[torch.Tensor], torch.Tensor]]  # noqa: UP007

#: The attribute a module sets to declare the pooling it was trained with.
SCORE_POOL_ATTRIBUTE = "score_pool"

_NAMED = ("max", "avg", "sum")


def check_pool(pool: object, field: str = "pool") -> None:
    """Raise ValueError unless ``pool`` is ``"max"``, ``"avg"``, ``"sum"`` or a callable."""
    if not (callable(pool) or pool in _NAMED):
        raise ValueError(
            f"{field} must be 'max', 'avg', 'sum' or a callable B x K x h x w -> B x K, "
            f"got {pool!r}"
        )


def pool_scores(output: torch.Tensor, pool: Pool = "max") -> torch.Tensor:
    """Pool a score map B x K x h x w to scores B x K; B x K scores pass through unchanged.

    Args:
        output: float B x K or B x K x h x w (logits or any scores).
        pool: ``"max"``, ``"avg"``, ``"sum"`` or a callable B x K x h x w -> B x K. As a
            backward seed, ``"sum"`` puts 1 at every position of the class's map (the
            paper's), ``"avg"`` 1 / (h w) there and ``"max"`` 1 at the arg-max (shared among
            ties).

    Returns:
        float B x K.

    Raises:
        ValueError: an unknown pooling, or a callable that does not return B x K.

    Example:
        >>> out = torch.tensor([[[[0.0, 2.0], [4.0, 6.0]]]])
        >>> pool_scores(out, "max"), pool_scores(out, "avg")
        (tensor([[6.]]), tensor([[3.]]))
    """
    check_pool(pool)
    if output.ndim == 2:
        return output
    if pool == "max":
        return output.amax(dim=(2, 3))
    if pool == "avg":
        return output.mean(dim=(2, 3))
    if pool == "sum":
        return output.sum(dim=(2, 3))
    pooled = pool(output)  # type: ignore[operator]
    if not isinstance(pooled, torch.Tensor) or pooled.shape != output.shape[:2]:
        got = tuple(pooled.shape) if isinstance(pooled, torch.Tensor) else type(pooled).__name__
        raise ValueError(
            f"the pool callable must map B x K x h x w to B x K = {tuple(output.shape[:2])}, "
            f"got {got}"
        )
    return pooled


def model_pool(model: nn.Module, pool: Pool | None = None) -> Pool:
    """The pooling to use for ``model``: ``pool`` when given, else the module's own, else max.

    A module declares the pooling it was trained with as an attribute ``score_pool``
    (``"max"``, ``"avg"`` or a callable), e.g. ``score_pool = "avg"`` in its class body.

    Raises:
        ValueError: ``pool`` or the module's ``score_pool`` is not a pooling.
    """
    if pool is not None:
        check_pool(pool)
        return pool
    declared = getattr(model, SCORE_POOL_ATTRIBUTE, None)
    if declared is None:
        return "max"
    check_pool(declared, f"{type(model).__name__}.{SCORE_POOL_ATTRIBUTE}")
    return declared
