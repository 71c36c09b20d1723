"""``SeparateGain``: strategies whose tanh gain ``alpha`` is the last step of each scale's maps.

Such a strategy's one-scale maps are ``gain(before_gain(model, image, slots, size), slots)``:
everything that runs the model is in :meth:`SeparateGain.before_gain`, and ``alpha`` acts only
in :meth:`SeparateGain.gain`. ``dcsm-lightning tune`` uses the split to compute the maps before
the gain once per image and try every ``alpha`` on them
(:class:`~dcsm_lightning.tuning.maps.GainMaps`).
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import nn

from dcsm_lightning.saliency.base import SaliencyStrategy
from dcsm_lightning.saliency.candidates import CandidateSlots

__all__ = ["SeparateGain"]


class SeparateGain(SaliencyStrategy):
    """A :class:`~dcsm_lightning.saliency.SaliencyStrategy` whose :meth:`scale_maps` is
    :meth:`gain` of :meth:`before_gain` (override those two, not ``scale_maps``)."""

    def scale_maps(
        self, model: nn.Module, image: torch.Tensor, slots: CandidateSlots, size: tuple[int, int]
    ) -> torch.Tensor:
        return self.gain(self.before_gain(model, image, slots, size), slots)

    @abstractmethod
    def before_gain(
        self, model: nn.Module, image: torch.Tensor, slots: CandidateSlots, size: tuple[int, int]
    ) -> torch.Tensor:
        """One scale's maps float B x N x H x W (non-negative) before the gain: every step
        that does not depend on ``alpha`` (arguments as
        :meth:`~dcsm_lightning.saliency.SaliencyStrategy.scale_maps`)."""

    @abstractmethod
    def gain(self, maps: torch.Tensor, slots: CandidateSlots) -> torch.Tensor:
        """:meth:`before_gain`'s maps B x N x H x W -> the scale's maps, in [0, 1]."""
