"""Gradient x input saliency (Shrikumar et al. 2016) as a dcsm-lightning strategy (a plug-in).

Installed, this package registers ``GradXInput`` under the name ``grad_x_input`` through the
entry-point group ``dcsm_lightning.saliency`` (see ``pyproject.toml``); nothing imports it by
hand. A config then chooses it by name: ``saliency: [grad_x_input, dcsm]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dcsm_lightning.saliency import (
    CandidateSlots,
    SaliencyStrategy,
    class_gradients,
    normalize_by_max,
    upsample_maps,
)


class GradXInput(SaliencyStrategy):
    """``M^c = max_k |x_k * dS_c / dx_k|``, resized to the image and divided by its max.

    One forward per scale and one backward per candidate slot, shared by every image of the
    batch (:func:`~dcsm_lightning.saliency.class_gradients`).

    Args:
        gamma: the map is raised to this power after the division by the max (1: unchanged;
            below 1 spreads it out).
        (others): the base options (``name``, ``scales``, ``seed``, ...), passed on by keyword.
    """

    def __init__(self, *, gamma: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        self.gamma = float(gamma)

    def scale_maps(
        self, model: nn.Module, image: torch.Tensor, slots: CandidateSlots, size: tuple[int, int]
    ) -> torch.Tensor:
        grads = class_gradients(model, image, slots, None, seed=self.seed).grads[0]  # N x B x C..
        maps = (grads * image).abs().amax(dim=2).transpose(0, 1)  # B x N x h x w
        return normalize_by_max(upsample_maps(maps, size)) ** self.gamma
