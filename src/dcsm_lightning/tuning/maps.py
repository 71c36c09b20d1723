"""The tuning images held in memory, and one strategy's maps for any setting of its knobs.

:class:`TuningImages` runs the classifier once over the labelled images and keeps each batch
(image, rgb, valid, mask, tags, class probabilities). A map source gives a strategy's maps
B x K x S x S in [0, 1] for a setting of its init arguments and a candidate top-up N:

- :class:`LayerMaps` (``LayerGradient`` and DCSM's paper variant): Eq. 3's per-layer maps are
  computed once per image and scale, at the layers' own resolution, for every class any
  setting may need; each setting (``alpha``, ``layers``, ``scales``, N) is then composed from
  them by the strategy's own :meth:`~dcsm_lightning.saliency.LayerGradient.combine_layers` and
  ``scatter_scales`` (no second implementation of Eq. 4-5).
- :class:`GainMaps` (Simonyan, Captum attributions, Distinct: ``SeparateGain`` strategies):
  each scale's maps before the tanh gain are computed once per image and N; each setting of
  ``alpha`` and ``scales`` applies the strategy's own
  :meth:`~dcsm_lightning.saliency.gain.SeparateGain.gain` and ``scatter_scales`` to them.
- :class:`StrategyMaps` (any other strategy): the strategy with the setting's arguments, called
  on each batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dcsm_lightning.data.adapter import SegmentationBatch, as_adapter
from dcsm_lightning.errors import UserError
from dcsm_lightning.saliency import (
    DCSM,
    CandidateSlots,
    LayerGradient,
    SaliencyStrategy,
    max_pool_scores,
)
from dcsm_lightning.saliency.gain import SeparateGain
from dcsm_lightning.saliency.inputs import rescale
from dcsm_lightning.saliency.options import with_options
from dcsm_lightning.segmentation.flow import CandidateRule

__all__ = ["GainMaps", "LayerMaps", "StrategyMaps", "TuningImages", "map_source"]

CandidateMode = Literal["predicted", "labels"]


@dataclass
class TuningImages:
    """Labelled images, batched, with the classifier's probabilities.

    Attributes:
        batches: the adapted batches (``image`` on the model's device; ``rgb``, ``valid``,
            ``mask``, ``labels`` on the CPU; ``mask`` int64 B x S x S is required).
        probs: float B x K per batch, the sigmoid of the max-pooled scores at scale 1.
        ids: the image ids, in order.
    """

    batches: list[SegmentationBatch]
    probs: list[Tensor]
    ids: list[str]

    @classmethod
    def collect(cls, model: nn.Module, loader: Iterable[Any]) -> TuningImages:
        """Read every batch of ``loader`` (the batch contract) and score it with ``model``.

        Raises:
            UserError: a batch without ground-truth masks.
        """
        adapter = as_adapter(None)
        device = next(model.parameters()).device
        batches, probs, ids = [], [], []
        for index, raw in enumerate(loader):
            view = adapter(raw, index)
            if view.mask is None:
                raise UserError(
                    f"tuning batch {index} has no ground-truth masks",
                    "tune needs a mask per image (--masks DIR or a datamodule with masks)",
                )
            view = replace(view, image=view.image.to(device))
            with torch.no_grad():
                probs.append(torch.sigmoid(max_pool_scores(model(view.image)).float()).cpu())
            batches.append(view)
            ids += list(view.ids)
        return cls(batches, probs, ids)

    def __len__(self) -> int:
        return len(self.ids)

    def candidates(self, index: int, mode: CandidateMode, threshold: float, top_up: int) -> Tensor:
        """Candidates bool B x K of batch ``index`` by the segmentation's
        :class:`~dcsm_lightning.segmentation.flow.CandidateRule` (its tags, or the classes
        scoring above ``threshold`` topped up to ``top_up``)."""
        rule = CandidateRule(mode, threshold, top_up)
        return rule.select(self.probs[index], self.batches[index])


class StrategyMaps:
    """Maps of any strategy: the strategy with a setting's arguments, called per batch.

    Args:
        strategy: the configured strategy; model: the classifier; images: the tuning images.
        mode / threshold: how candidates are chosen (as the segmentation chooses them).
    """

    def __init__(
        self,
        strategy: SaliencyStrategy,
        model: nn.Module,
        images: TuningImages,
        mode: CandidateMode = "predicted",
        threshold: float = 0.5,
    ) -> None:
        self.strategy, self.model, self.images = strategy, model, images
        self.mode, self.threshold = mode, threshold

    def candidates(self, index: int, top_up: int) -> Tensor:
        return self.images.candidates(index, self.mode, self.threshold, top_up)

    def maps(self, options: Mapping[str, Any], top_up: int) -> list[tuple[Tensor, Tensor]]:
        """Per batch: maps float B x K x S x S in [0, 1] (CPU) and candidates bool B x K."""
        strategy = with_options(self.strategy, **options)
        out = []
        for index, batch in enumerate(self.images.batches):
            candidates = self.candidates(index, top_up)
            maps = strategy(self.model, batch.image, candidates.to(batch.image.device))
            out.append((maps.cpu(), candidates))
        return out


class LayerMaps(StrategyMaps):
    """Maps of a ``LayerGradient`` (or DCSM, paper variant) composed from stored Eq. 3 maps.

    Args:
        layers / scales / top_ups: every layer, scale and N any setting will ask for (a
            larger N than stored is refused).
        (others): as :class:`StrategyMaps`.
    """

    def __init__(
        self,
        strategy: LayerGradient,
        model: nn.Module,
        images: TuningImages,
        layers: Sequence[str],
        scales: Sequence[float],
        top_ups: Sequence[int],
        mode: CandidateMode = "predicted",
        threshold: float = 0.5,
    ) -> None:
        super().__init__(strategy, model, images, mode, threshold)
        self.layers = list(dict.fromkeys(layers))
        wide = with_options(strategy, layers=tuple(self.layers))
        #: per batch: scale -> layer -> float B x K x h x w (0 off the union of candidates)
        self.stored: list[dict[float, dict[str, Tensor]]] = []
        #: per batch: bool B x K, the classes whose maps are stored
        self.union: list[Tensor] = []
        for index, batch in enumerate(images.batches):
            union = torch.stack([self.candidates(index, n) for n in top_ups]).any(0)
            self.union.append(union)
            slots = CandidateSlots.from_mask(union.to(batch.image.device))
            per_scale: dict[float, dict[str, Tensor]] = {}
            with wide.session(model):
                image = batch.image.detach().clone()
                for scale in dict.fromkeys(float(s) for s in scales):
                    if slots.num_slots == 0:
                        maps = [image.new_zeros(len(image), 0, 1, 1)] * len(self.layers)
                    else:
                        maps, _ = wide.native_layer_maps(model, rescale(image, scale), slots)
                    per_scale[scale] = {
                        name: slots.scatter(m.detach()).cpu()
                        if slots.num_slots
                        else torch.zeros(len(image), slots.num_classes, 1, 1)
                        for name, m in zip(self.layers, maps, strict=True)
                    }
            self.stored.append(per_scale)

    def maps(self, options: Mapping[str, Any], top_up: int) -> list[tuple[Tensor, Tensor]]:
        """Per batch: maps float B x K x S x S in [0, 1] (CPU) and candidates bool B x K,
        composed on the candidates' slots only (as the strategy composes them)."""
        strategy = with_options(self.strategy, **options)
        out = []
        for index, batch in enumerate(self.images.batches):
            candidates = self.candidates(index, top_up)
            if (candidates & ~self.union[index]).any():
                raise ValueError(f"N = {top_up} asks for classes whose maps were not stored")
            slots = CandidateSlots.from_mask(candidates)
            size = (batch.image.shape[-2], batch.image.shape[-1])
            if slots.num_slots == 0:
                out.append((torch.zeros(len(candidates), slots.num_classes, *size), candidates))
                continue
            parts = (
                strategy.combine_layers(
                    [slots.gather(self.stored[index][scale][n]) for n in strategy.layers],
                    slots.valid,
                    size,
                )
                for scale in strategy.scales
            )
            out.append((strategy.scatter_scales(parts, slots), candidates))
        return out


class GainMaps(StrategyMaps):
    """Maps of a :class:`~dcsm_lightning.saliency.gain.SeparateGain` strategy (Simonyan,
    Captum attributions, Distinct) whose grid varies ``alpha`` and ``scales`` at most: each
    scale's maps before the gain are computed once per N and batch (when N is first asked
    for), and each setting applies its gain to them, as the strategy's own call does.

    Args:
        scales: every scale any setting will ask for. (others): as :class:`StrategyMaps`.
    """

    def __init__(
        self,
        strategy: SeparateGain,
        model: nn.Module,
        images: TuningImages,
        scales: Sequence[float],
        mode: CandidateMode = "predicted",
        threshold: float = 0.5,
    ) -> None:
        super().__init__(strategy, model, images, mode, threshold)
        self.scales = list(dict.fromkeys(float(s) for s in scales))
        #: N -> per batch: scale -> float B x slots x S x S on the model's device
        self.stored: dict[int, list[dict[float, Tensor]]] = {}

    def _before_gain(self, top_up: int) -> list[dict[float, Tensor]]:
        if top_up not in self.stored:
            strategy: Any = self.strategy
            per_batch = []
            for index, batch in enumerate(self.images.batches):
                candidates = self.candidates(index, top_up).to(batch.image.device)
                slots = CandidateSlots.from_mask(candidates)
                size = (batch.image.shape[-2], batch.image.shape[-1])
                per_scale = {}
                if slots.num_slots:
                    with strategy.session(self.model):
                        image = batch.image.detach().clone()
                        for scale in self.scales:
                            maps = strategy.before_gain(
                                self.model, rescale(image, scale), slots, size
                            )
                            per_scale[scale] = maps.detach()
                per_batch.append(per_scale)
            self.stored[top_up] = per_batch
        return self.stored[top_up]

    def maps(self, options: Mapping[str, Any], top_up: int) -> list[tuple[Tensor, Tensor]]:
        strategy: Any = with_options(self.strategy, **options)
        out = []
        for index, stored in enumerate(self._before_gain(top_up)):
            candidates = self.candidates(index, top_up)
            image = self.images.batches[index].image  # the stored maps' device and size
            slots = CandidateSlots.from_mask(candidates.to(image.device))
            if slots.num_slots == 0:
                size = tuple(image.shape[-2:])
                out.append((torch.zeros(len(candidates), slots.num_classes, *size), candidates))
                continue
            parts = (strategy.gain(stored[scale], slots) for scale in strategy.scales)
            out.append((strategy.scatter_scales(parts, slots).cpu(), candidates))
        return out


def map_source(
    strategy: SaliencyStrategy,
    model: nn.Module,
    images: TuningImages,
    option_values: Mapping[str, Sequence[Any]],
    top_ups: Sequence[int],
    mode: CandidateMode = "predicted",
    threshold: float = 0.5,
) -> StrategyMaps:
    """The fastest source for ``strategy``: :class:`LayerMaps` for a ``LayerGradient`` whose
    grid varies at most ``alpha``, ``layers`` and ``scales`` (DCSM: the paper variant),
    :class:`GainMaps` for a ``SeparateGain`` strategy whose grid varies at most ``alpha`` and
    ``scales``, else :class:`StrategyMaps`.

    Args:
        option_values: the grid's values of each searched init argument.
        top_ups: the grid's values of N.
    """
    composable = (
        type(strategy) in (LayerGradient, DCSM)
        and getattr(strategy, "variant", "paper") == "paper"
        and set(option_values) <= {"alpha", "layers", "scales"}
    )
    scales = [s for group in option_values.get("scales", [strategy.scales]) for s in group]
    if isinstance(strategy, SeparateGain) and set(option_values) <= {"alpha", "scales"}:
        return GainMaps(strategy, model, images, scales, mode, threshold)
    if not composable:
        return StrategyMaps(strategy, model, images, mode, threshold)
    layers = [n for group in option_values.get("layers", [strategy.layers]) for n in group]
    return LayerMaps(strategy, model, images, layers, scales, top_ups, mode, threshold)
