"""``CaptumAttribution``: any ``captum.attr`` attribution method as a saliency strategy."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from dcsm_lightning.saliency.candidates import CandidateSlots
from dcsm_lightning.saliency.captum_engine import ScoreHead
from dcsm_lightning.saliency.captum_methods import (
    captum_class,
    check_attribute_args,
    check_constructor,
    check_layer_option,
    check_model,
)
from dcsm_lightning.saliency.equations import normalize_by_max, upsample_maps
from dcsm_lightning.saliency.gain import SeparateGain
from dcsm_lightning.saliency.inputs import check_choice
from dcsm_lightning.saliency.layers import resolve_layer
from dcsm_lightning.saliency.registry import register_saliency

Reduce = Literal["max_abs", "sum", "none"]


@register_saliency("captum")
class CaptumAttribution(SeparateGain):
    """Maps from any ``captum.attr`` attribution (Integrated Gradients, NoiseTunnel, Grad-CAM ...).

    For each scale and candidate class c: ``A = method.attribute(image, target=c,
    **attribute_args)``, where the forward function Captum sees is the model followed by the
    strategy's backward seed (``seed="sum"`` over the score map, ``"max"`` = global max
    pooling, ``"pool"`` = the strategy's ``pool``; B x K outputs are used as they are), so
    Captum's class score is the one every other strategy differentiates. Then, per map:
    reduce the channels (``"max_abs"``: ``max_k |A_k|``, ``"sum"``: ``sum_k A_k``,
    ``"none"``: the single channel), resize bilinearly to H x W, divide by the map's max,
    and, when ``alpha`` is given, ``tanh(alpha * .)``; negative values count as 0. Scales are
    averaged; non-candidates get 0. One Captum call per candidate slot and scale (each
    image's j-th candidate as its target).

    Every public ``captum.attr`` attribution class either runs or is refused with the reason
    (tested on a ResNet-18: ``tests/saliency/test_captum_walk.py``): input methods
    (``Saliency``, ``IntegratedGradients``, ``GuidedBackprop``, ``Occlusion``, ``Lime`` ...),
    layer methods and ``GuidedGradCam`` with ``layer=``, and ``NoiseTunnel`` run; base,
    neuron and LLM classes, methods without a class target and a few others are refused
    when built, DeepLift on a model that reuses a module in :meth:`setup` (see
    :mod:`~dcsm_lightning.saliency.captum_methods`).

    Args:
        method: a ``captum.attr`` class name (``"IntegratedGradients"``) or an import path.
        layer: the layer of a method whose constructor takes one (``LayerGradCam``,
            ``Layer*``, ``GuidedGradCam``), by our layer names (a module path or its tail,
            e.g. ``relu5_3``, ``layer4``); required for those, refused for the others.
        method_args: further constructor arguments (e.g. ``multiply_by_inputs: false``). For
            ``NoiseTunnel``, ``attribution_method`` names the wrapped method (default
            ``"Saliency"``), built on the same model (and ``layer``).
        attribute_args: keyword arguments of ``attribute()`` besides ``inputs`` and
            ``target`` (e.g. ``n_steps``, ``baselines``, ``internal_batch_size``,
            NoiseTunnel's ``nt_type`` / ``nt_samples``, ``attribute_to_layer_input``,
            LayerGradCam's ``relu_attributions``).
        reduce: ``"max_abs"`` (default), ``"sum"`` or ``"none"`` (single-channel outputs such
            as Grad-CAM's).
        alpha: tanh gain after the division by the max; None (default): no tanh.
        name: log name; default ``captum_<method in snake case>``.
        (others): see :class:`~dcsm_lightning.saliency.SaliencyStrategy`.

    Raises:
        ValueError: an unknown method (close matches listed), a method that cannot give a
            map per class (the reason given), a layer method without ``layer`` (or ``layer``
            for another method), a required constructor or ``attribute()`` argument missing
            (e.g. ``baselines`` of ``GradientShap``), or ``inputs`` / ``target`` among
            ``attribute_args``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 1))
        >>> ig = CaptumAttribution(method="IntegratedGradients", attribute_args={"n_steps": 8})
        >>> image = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> maps = ig(net, image, torch.tensor([[True, False, True, False, False]]))
        >>> ig.name, maps.shape, bool(maps[0, 0].amax() == 1), bool(maps[0, 1].eq(0).all())
        ('captum_integrated_gradients', torch.Size([1, 5, 16, 16]), True, True)
    """

    def __init__(
        self,
        *,
        method: str = "Saliency",
        layer: str | None = None,
        method_args: dict[str, Any] | None = None,
        attribute_args: dict[str, Any] | None = None,
        reduce: Reduce = "max_abs",
        alpha: float | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        cls = captum_class(method)
        if name is None:
            name = "captum_" + re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cls.__name__).lower()
        super().__init__(name=name, **kwargs)
        check_choice("reduce", reduce, ("max_abs", "sum", "none"))
        if alpha is not None and not alpha > 0:
            raise ValueError(f"alpha must be > 0 or None, got {alpha!r}")
        self.method = method
        self.layer = None if layer is None else str(layer)
        self.method_args = dict(method_args or {})
        self.attribute_args = dict(attribute_args or {})
        self.reduce = reduce
        self.alpha = None if alpha is None else float(alpha)
        self._method_class = cls
        inner = self._check_method_args(cls)
        check_attribute_args(cls, inner, self.attribute_args)

    def _check_method_args(self, cls: type) -> type | None:
        """Check ``layer`` and ``method_args``; the class wrapped by NoiseTunnel (else None)."""
        from captum.attr import NoiseTunnel

        inner = None
        if cls is NoiseTunnel:
            inner = captum_class(self.method_args.get("attribution_method", "Saliency"))
            extra = set(self.method_args) - {"attribution_method"}
            if extra:
                raise ValueError(
                    f"method_args: NoiseTunnel takes only attribution_method, got {extra}"
                )
        check_layer_option(inner or cls, self.method, self.layer)
        if inner is None:
            check_constructor(cls, self.method_args)
        return inner

    def setup(self, model: nn.Module) -> None:
        """Check before the first batch that the method can serve ``model`` (e.g. DeepLift
        needs each module to run once per forward) and resolve ``layer``."""
        super().setup(model)
        check_model(self._method_class, self.method, model)
        if self.layer is not None:
            resolve_layer(model, self.layer)

    def build(self, forward: nn.Module, model: nn.Module) -> Any:
        """The Captum attribution object for ``forward`` (``layer`` resolved in ``model``)."""
        from captum.attr import NoiseTunnel

        def make(cls: type, args: Mapping[str, Any]) -> Any:
            if self.layer is not None:
                return cls(forward, resolve_layer(model, self.layer)[1], **args)
            return cls(forward, **args)

        if self._method_class is NoiseTunnel:
            inner = captum_class(self.method_args.get("attribution_method", "Saliency"))
            return NoiseTunnel(make(inner, {}))
        return make(self._method_class, self.method_args)

    def before_gain(
        self, model: nn.Module, image: torch.Tensor, slots: CandidateSlots, size: tuple[int, int]
    ) -> torch.Tensor:
        attribution = self.build(ScoreHead(model, self.seed_for(model), slots.num_classes), model)
        maps = []
        for j in range(slots.num_slots):
            out = attribution.attribute(
                image, target=slots.classes[:, j].tolist(), **self.attribute_args
            )
            while isinstance(out, (tuple, list)):  # (attributions, delta) or per-input tuples
                out = out[0]
            maps.append(self._reduce(out.detach()))
        return normalize_by_max(upsample_maps(torch.stack(maps, dim=1), size)).clamp(min=0)

    def gain(self, maps: torch.Tensor, slots: CandidateSlots) -> torch.Tensor:
        return maps if self.alpha is None else torch.tanh(self.alpha * maps)

    def _reduce(self, attributions: torch.Tensor) -> torch.Tensor:
        """B x C x h x w -> B x h x w by ``reduce``."""
        if attributions.ndim != 4:
            raise ValueError(
                f"{self.method} gave attributions of shape {tuple(attributions.shape)}; "
                "maps need B x C x h x w (an image or a convolutional layer)"
            )
        if self.reduce == "max_abs":
            return attributions.abs().amax(dim=1)
        if self.reduce == "sum":
            return attributions.sum(dim=1)
        if attributions.shape[1] != 1:
            raise ValueError(
                f"reduce='none' needs single-channel attributions; {self.method} gave "
                f"{attributions.shape[1]} channels (use 'max_abs' or 'sum')"
            )
        return attributions[:, 0]
