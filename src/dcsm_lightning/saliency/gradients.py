"""Gradient saliency: ``Simonyan`` (w.r.t. the image), ``LayerGradient`` (Eq. 3 at named layers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from dcsm_lightning.saliency.backprop import At, Backprop, ClassGradients, class_gradients
from dcsm_lightning.saliency.base import SaliencyStrategy
from dcsm_lightning.saliency.candidates import CandidateSlots
from dcsm_lightning.saliency.captum_engine import captum_class_gradients
from dcsm_lightning.saliency.default_layers import LayerChoice, cached_default_layers
from dcsm_lightning.saliency.equations import (
    Normalize,
    max_abs_over_channels,
    subtract_other_candidates,
    tanh_normalize,
    upsample_maps,
)
from dcsm_lightning.saliency.gain import SeparateGain
from dcsm_lightning.saliency.inputs import check_candidates, check_choice, check_image, rescale
from dcsm_lightning.saliency.layers import resolve_layers
from dcsm_lightning.saliency.pooling import Pool
from dcsm_lightning.saliency.registry import register_saliency

Engine = Literal["shared", "captum"]


def engine_gradients(
    engine: Engine,
    model: nn.Module,
    image: torch.Tensor,
    slots: CandidateSlots,
    layers: list[tuple[str, nn.Module]] | None,
    at: At,
    seed: Pool,
    backprop: Backprop,
    batched: bool,
) -> ClassGradients:
    """Eq. 3's per-slot maps ``max_k |dS_c / dL|`` (N x B x h x w per target) from an engine.

    ``"shared"``: :func:`~dcsm_lightning.saliency.class_gradients` (one forward per scale,
    ``batched`` picks the backward); ``"captum"``: :func:`captum_class_gradients` (Captum's
    ``Saliency`` / ``LayerGradientXActivation``, one call per slot).
    """
    if engine == "captum":
        return captum_class_gradients(
            model, image, slots, layers, at, seed, backprop, reduce=max_abs_over_channels
        )
    return class_gradients(
        model, image, slots, layers, at, seed, backprop, batched, reduce=max_abs_over_channels
    )


@register_saliency("simonyan")
class Simonyan(SeparateGain):
    """Image-specific class saliency (Simonyan, Vedaldi & Zisserman, ICLR 2014 workshop).

    ``M^c(x, y) = max_k |dS_c / dI(x, y, k)|`` (the derivative w.r.t. the input image, max of
    absolute values over RGB, as Captum's ``Saliency``), then ``tanh(alpha * M / max M)``
    (best ``alpha = 8`` in the paper's Table 1), averaged over ``scales`` like DCSM. No
    candidate subtraction.

    Args:
        alpha: tanh gain.
        normalize: ``"max"`` divides each map by its maximum before the tanh; ``"none"`` not.
        engine: ``"shared"`` (default: one forward per scale for all candidates) or
            ``"captum"`` (the derivative from ``captum.attr.Saliency``, one call per
            candidate slot; the same maps, see :func:`engine_gradients`).
        (others): see :class:`~dcsm_lightning.saliency.SaliencyStrategy`.
    """

    def __init__(
        self,
        *,
        alpha: float = 8.0,
        normalize: Normalize = "max",
        engine: Engine = "shared",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_alpha(alpha)
        check_choice("normalize", normalize, ("max", "none"))
        check_choice("engine", engine, ("shared", "captum"))
        self.alpha = float(alpha)
        self.normalize = normalize
        self.engine = engine

    def before_gain(
        self, model: nn.Module, image: torch.Tensor, slots: CandidateSlots, size: tuple[int, int]
    ) -> torch.Tensor:
        batched = self.use_batched_backward(image.device)
        result = engine_gradients(
            self.engine, model, image, slots, None, "input", self.seed_for(model), "bp", batched
        )
        return upsample_maps(result.grads[0].transpose(0, 1), size)  # B x N x H x W

    def gain(self, maps: torch.Tensor, slots: CandidateSlots) -> torch.Tensor:
        return tanh_normalize(maps, self.alpha, self.normalize)


@register_saliency("layer_gradient")
class LayerGradient(SaliencyStrategy):
    """Class saliency from the derivative at intermediate layers (Shimoda & Yanai 2016, Eq. 3).

    For class c and layer i: ``v_i^c = dS_c / dL_i`` (``at="input"``: the feature map the
    layer reads, as in the authors' MatConvNet code; ``"output"``: the one it writes), back-
    propagated with plain (``"bp"``) or guided (``"guided"``) ReLU gradients;
    ``M_i^c = max_k |v_i^c(k)|`` at the layer's resolution, bilinearly up-sampled
    (``align_corners=False``) to the image's H x W. The output is
    ``mean_{scales, layers} tanh(alpha * Mtilde / max Mtilde)`` (Eq. 5), with ``Mtilde = M``
    or, with ``subtract=True``, the candidate subtraction of Eq. 4.
    :meth:`layer_maps` returns the raw per-layer maps ``M_i^c``.

    Args:
        layers: layer names (module paths or their tails), equal weight per layer; None
            (default): the model's own, by the rules of
            :func:`~dcsm_lightning.saliency.default_layers` (our VGG backbones: the conv
            layers of blocks 3-5, ``conv3_1`` ... ``conv5_3``; a torchvision ResNet: the
            outputs of ``layer2`` ... ``layer4``; another network: its last blocks at output
            strides 8, 16 and 32), resolved in :meth:`setup`, before the first batch.
        at: derivative w.r.t. the layer's ``"input"`` or ``"output"``; None (default):
            ``"input"`` for named layers and the VGG defaults (the authors' code), the
            default rule's side (``"output"``: stage outputs) otherwise.
        backprop: ``"bp"`` or ``"guided"`` (only positive gradients pass every ``nn.ReLU``).
        alpha: tanh gain of Eq. 5.
        subtract: apply Eq. 4 (subtract the other candidates' maps).
        normalize: ``"max"`` or ``"none"``: divide each map by its own maximum before the tanh.
        engine: ``"shared"`` (default: one forward per scale, the candidates' seeds back
            through it) or ``"captum"`` (``captum.attr.LayerGradientXActivation`` with
            ``multiply_by_inputs=False``, one call per candidate slot; the same maps, see
            :func:`engine_gradients`). Everything after Eq. 3 is the same code.
        (others): see :class:`~dcsm_lightning.saliency.SaliencyStrategy`.
    """

    def __init__(
        self,
        *,
        layers: Sequence[str] | None = None,
        at: At | None = None,
        backprop: Backprop = "bp",
        alpha: float = 3.0,
        subtract: bool = False,
        normalize: Normalize = "max",
        engine: Engine = "shared",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_choice("engine", engine, ("shared", "captum"))
        self.engine = engine
        if layers is not None and (isinstance(layers, str) or not layers):
            raise ValueError(f"layers must be a non-empty list of layer names, got {layers!r}")
        if at is not None:
            check_choice("at", at, ("input", "output"))
        check_choice("backprop", backprop, ("bp", "guided"))
        check_choice("normalize", normalize, ("max", "none"))
        _check_alpha(alpha)
        self.layers = None if layers is None else tuple(str(name) for name in layers)
        self.at = at
        self.backprop = backprop
        self.alpha = float(alpha)
        self.subtract = bool(subtract)
        self.normalize = normalize
        self._defaults: dict[Any, LayerChoice] = {}

    def layer_choice(self, model: nn.Module) -> LayerChoice:
        """The layers read on ``model`` and their side: ``layers`` / ``at`` or the defaults.

        Raises:
            NoDefaultLayers: ``layers`` is None and no default rule applies to the model.
        """
        if self.layers is not None:
            return LayerChoice(self.layers, self.at or "input", "given")
        choice = cached_default_layers(self._defaults, model, "blocks")
        return LayerChoice(choice.paths, self.at or choice.at, choice.rule)

    def setup(self, model: nn.Module) -> None:
        """Resolve the layers on ``model`` (see :meth:`layer_choice`), before the first batch."""
        super().setup(model)
        resolve_layers(model, self.layer_choice(model).paths)

    def native_layer_maps(
        self, model: nn.Module, image: torch.Tensor, slots: CandidateSlots
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Eq. 3 maps ``max_k |dS_c / dL_i|`` per layer at the layer's own resolution.

        Args:
            model: the model (inside :meth:`session`). image: float B x 3 x h' x w' (one scale).
            slots: the candidate slots.

        Returns:
            One float B x N x h_i x w_i per layer of ``layers`` (non-negative, not yet resized),
            and the model output at this scale.
        """
        choice = self.layer_choice(model)
        result = engine_gradients(
            self.engine,
            model,
            image,
            slots,
            resolve_layers(model, choice.paths),
            choice.at,
            self.seed_for(model),
            self.backprop,
            self.use_batched_backward(image.device),
        )
        return [g.transpose(0, 1) for g in result.grads], result.output

    def _raw_layer_maps(
        self, model: nn.Module, image: torch.Tensor, slots: CandidateSlots, size: tuple[int, int]
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Eq. 3 maps B x N x H x W per layer at one scale, and the model output there."""
        maps, output = self.native_layer_maps(model, image, slots)
        return [upsample_maps(m, size) for m in maps], output

    def scale_maps(
        self, model: nn.Module, image: torch.Tensor, slots: CandidateSlots, size: tuple[int, int]
    ) -> torch.Tensor:
        maps, _ = self.native_layer_maps(model, image, slots)
        return self.combine_layers(maps, slots.valid, size)

    def combine_layers(
        self, maps: Sequence[torch.Tensor], valid: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """One scale's output from :meth:`native_layer_maps`: resize, Eq. 4, Eq. 5's mean.

        ``mean_i tanh(alpha * Mtilde_i / max Mtilde_i)`` over the given layers, ``Mtilde_i`` the
        up-sampled map ``M_i`` or, with ``subtract``, Eq. 4 over the ``valid`` entries.

        Args:
            maps: one float B x N x h_i x w_i per layer, non-negative.
            valid: bool B x N, the candidate entries (the others give 0).
            size: (H, W) of the output.

        Returns:
            float B x N x H x W in [0, 1).
        """
        terms = [
            tanh_normalize(self._subtracted(upsample_maps(m, size), valid), self.alpha,
                           self.normalize)
            for m in maps
        ]  # fmt: skip
        return torch.stack(terms).mean(0)

    def _subtracted(self, maps: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.subtract:
            return subtract_other_candidates(maps, valid)
        return maps * valid[..., None, None]

    def layer_maps(
        self, model: nn.Module, image: torch.Tensor, candidates: torch.Tensor, scale: float = 1.0
    ) -> dict[str, torch.Tensor]:
        """The raw Eq. 3 maps ``M_i^c`` per layer: name -> float B x K x H x W (0 off-candidate).

        Args:
            model: the model; image: float B x 3 x H x W; candidates: bool B x K.
            scale: the input scale (maps are brought back to H x W).
        """
        check_image(image)
        check_candidates(candidates, image.shape[0])
        with self.session(model):
            image = image.detach().clone()
            slots = CandidateSlots.from_mask(candidates.to(image.device))
            size = (image.shape[-2], image.shape[-1])
            names = self.layer_choice(model).paths
            if slots.num_slots == 0:
                zeros = image.new_zeros(image.shape[0], slots.num_classes, *size)
                return {name: zeros.clone() for name in names}
            maps, _ = self._raw_layer_maps(model, rescale(image, scale), slots, size)
            return {n: slots.scatter(m.detach()) for n, m in zip(names, maps, strict=True)}


def _check_alpha(alpha: float) -> None:
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
