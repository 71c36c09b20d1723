"""``DCSM``: distinct class-specific saliency maps (Shimoda & Yanai, ECCV 2016, Sec. 3.3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from dcsm_lightning.saliency.backprop import Backprop
from dcsm_lightning.saliency.candidates import CandidateSlots
from dcsm_lightning.saliency.equations import positive_pair_differences, tanh_normalize
from dcsm_lightning.saliency.gradients import LayerGradient
from dcsm_lightning.saliency.inputs import check_choice
from dcsm_lightning.saliency.pooling import model_pool, pool_scores
from dcsm_lightning.saliency.registry import register_saliency

Variant = Literal["paper", "authors"]


@register_saliency("dcsm")
class DCSM(LayerGradient):
    """Distinct class-specific saliency maps (Shimoda & Yanai, ECCV 2016).

    Built from :class:`~dcsm_lightning.saliency.LayerGradient`'s pieces. For each scale j,
    layer i and candidate class c:

    - Eq. 3: ``M_{j,i}^c = up(max_k |dS_c / dL_i|)``, guided back-propagation by default, at
      the input of the conv layers of blocks 3-5;
    - Eq. 4: ``Mtilde^c = sum_{c' in C, c' != c} max(M^c - M^c', 0)`` over the other
      candidates C (a class with no other candidate keeps ``M^c``; ``subtract=False``:
      ``Mtilde = M``);
    - Eq. 5: ``Mhat^c = 1 / (|S||L|) sum_{j,i} tanh(alpha * Mtilde_{j,i}^c / max Mtilde_{j,i}^c)``
      (``normalize="none"`` drops the division; a zero map stays zero).

    ``variant="authors"`` follows the authors' public code instead: for each pair (c, c'),
    ``D = M^c - M^c'`` is divided by its own spatial max, passed through ``tanh(alpha * .)``
    and its non-positive part set to 0; these pair maps are summed over c', layers and scales
    (see :func:`~dcsm_lightning.saliency.positive_pair_differences`), and the sum is divided
    by its max and passed through ``tanh(alpha * .)`` once more. A class gets a map at a scale
    only if its score there (sigmoid of the output pooled by ``pool``) is above ``threshold``;
    topped-up candidates below it serve only as subtrahends. With ``subtract=False`` that
    variant sums ``tanh(alpha * M / max M)`` instead of the pair maps.

    Args:
        layers: layer names; default ``conv3_1`` ... ``conv5_3`` (Table 2's blocks 3-5).
        at: ``"input"`` (default, the authors' code) or ``"output"``.
        backprop: ``"guided"`` (default, Table 5) or ``"bp"``.
        scales: input scales, default (0.8, 1.0, 1.2) (400 / 500 / 600 px in the paper).
        alpha: tanh gain, default 3 (Table 1).
        subtract: Eq. 4 on (default) or off.
        normalize: ``"max"`` (default) or ``"none"``.
        variant: ``"paper"`` (default) or ``"authors"``.
        threshold: the candidate threshold; with ``variant="authors"`` also the per-scale
            score threshold.
        (others): see :class:`~dcsm_lightning.saliency.SaliencyStrategy`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from dcsm_lightning.saliency import DCSM
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 1))
        >>> image = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> candidates = torch.tensor([[True, True, False, False, False]] * 2)
        >>> maps = DCSM(layers=["2"], scales=(1.0,))(net, image, candidates)
        >>> maps.shape, bool(maps[:, 2:].eq(0).all()), bool(maps.le(1).all())
        (torch.Size([2, 5, 16, 16]), True, True)
    """

    def __init__(
        self,
        *,
        backprop: Backprop = "guided",
        scales: Sequence[float] = (0.8, 1.0, 1.2),
        subtract: bool = True,
        variant: Variant = "paper",
        **kwargs: Any,
    ) -> None:
        super().__init__(backprop=backprop, scales=scales, subtract=subtract, **kwargs)
        check_choice("variant", variant, ("paper", "authors"))
        self.variant = variant

    def scale_maps(
        self, model: nn.Module, image: torch.Tensor, slots: CandidateSlots, size: tuple[int, int]
    ) -> torch.Tensor:
        if self.variant == "paper":
            return super().scale_maps(model, image, slots, size)
        maps, output = self._raw_layer_maps(model, image, slots, size)
        probs = torch.sigmoid(slots.gather(pool_scores(output, model_pool(model, self.pool))))
        active = slots.valid & (probs > self.threshold)
        if self.subtract:
            terms = [
                positive_pair_differences(m, slots.valid, active, self.alpha, self.normalize)
                for m in maps
            ]
        else:
            terms = [
                tanh_normalize(m, self.alpha, self.normalize) * active[..., None, None]
                for m in maps
            ]
        return torch.stack(terms).sum(0)

    def combine_scales(self, total: torch.Tensor, num_scales: int) -> torch.Tensor:
        if self.variant == "paper":
            return total / num_scales
        return tanh_normalize(total, self.alpha, self.normalize)
