"""``Distinct``: Eq. 4's subtraction of the other candidates applied to any strategy's maps."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from dcsm_lightning.saliency.base import SaliencyStrategy
from dcsm_lightning.saliency.candidates import CandidateSlots
from dcsm_lightning.saliency.equations import (
    normalize_by_max,
    subtract_other_candidates,
    tanh_normalize,
)
from dcsm_lightning.saliency.gain import SeparateGain
from dcsm_lightning.saliency.registry import register_saliency


@register_saliency("distinct")
class Distinct(SeparateGain):
    """ "Distinct" maps of any strategy: Eq. 4 on its per-scale maps, then renormalised.

    For each scale, with ``M^c`` the ``base`` strategy's map of candidate c at that scale
    (:meth:`~dcsm_lightning.saliency.SaliencyStrategy.scale_maps`):
    ``Mtilde^c = sum_{c' in C, c' != c} max(M^c - M^c', 0)`` (Shimoda & Yanai 2016, Eq. 4; a
    candidate with no other candidate keeps ``M^c``), then ``Mtilde / max Mtilde`` or, when
    ``alpha`` is given, ``tanh(alpha * Mtilde / max Mtilde)`` (Eq. 5's term). The scales are
    combined as the base combines them. ``Distinct(base=GradCAM())`` and
    ``Distinct(base=CaptumAttribution(method="IntegratedGradients"))`` are distinct versions of
    methods the paper never had; ``Distinct(base=LayerGradient(layers=[l]))`` with
    ``alpha=3`` is close to DCSM on one layer (DCSM subtracts before the per-layer tanh).

    The base's scales, seed, candidate options and model session are used; the base is not
    modified.

    Args:
        base: the strategy whose maps are made distinct.
        alpha: tanh gain after the renormalisation; None (default): division by the max only.
        name: log name; default ``distinct_<base name>`` (``distinct_gradcam``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from dcsm_lightning.saliency import GradCAM
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))
        >>> strategy = Distinct(base=GradCAM(layer="1"))
        >>> image = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> strategy.name, strategy(net, image, torch.tensor([[True, True, False]])).shape
        ('distinct_gradcam', torch.Size([1, 3, 8, 8]))
    """

    def __init__(
        self, *, base: SaliencyStrategy, alpha: float | None = None, name: str | None = None
    ) -> None:
        if not isinstance(base, SaliencyStrategy):
            raise ValueError(f"base must be a SaliencyStrategy, got {type(base).__name__}")
        if alpha is not None and not alpha > 0:
            raise ValueError(f"alpha must be > 0 or None, got {alpha!r}")
        super().__init__(
            name=f"distinct_{base.name}" if name is None else name,
            scales=base.scales,
            seed=base.seed,
            pool=base.pool,
            threshold=base.threshold,
            min_candidates=base.min_candidates,
            batched_backward=base.batched_backward,
        )
        self.base = base
        self.alpha = None if alpha is None else float(alpha)

    def setup(self, model: nn.Module) -> None:
        """The base strategy's setup (its layers resolved and checked)."""
        self.base.setup(model)

    @contextmanager
    def session(self, model: nn.Module) -> Iterator[None]:
        """The base strategy's session."""
        with self.base.session(model):
            yield

    def before_gain(
        self, model: nn.Module, image: torch.Tensor, slots: CandidateSlots, size: tuple[int, int]
    ) -> torch.Tensor:
        return subtract_other_candidates(
            self.base.scale_maps(model, image, slots, size), slots.valid
        )

    def gain(self, maps: torch.Tensor, slots: CandidateSlots) -> torch.Tensor:
        return normalize_by_max(maps) if self.alpha is None else tanh_normalize(maps, self.alpha)

    def combine_scales(self, total: torch.Tensor, num_scales: int) -> torch.Tensor:
        return self.base.combine_scales(total, num_scales)
