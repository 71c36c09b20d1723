"""Class activation maps (beyond the paper): ``CAM`` (classifier weights) and ``GradCAM``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from dcsm_lightning.saliency.backprop import At, capture_tensors, class_gradients
from dcsm_lightning.saliency.base import SaliencyStrategy
from dcsm_lightning.saliency.candidates import CandidateSlots
from dcsm_lightning.saliency.default_layers import LayerChoice, cached_default_layers
from dcsm_lightning.saliency.equations import normalize_by_max, upsample_maps
from dcsm_lightning.saliency.inputs import check_choice, checked_forward
from dcsm_lightning.saliency.layers import resolve_layer
from dcsm_lightning.saliency.pooling import Pool
from dcsm_lightning.saliency.registry import register_saliency


def _spatial_mean(grad: torch.Tensor) -> torch.Tensor:
    return grad.mean(dim=(-2, -1))


def weighted_activation_map(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """``relu(sum_k w^c_k A_k)``: weights B x N x C, activations B x C x h x w -> B x N x h x w."""
    return torch.einsum("bnc,bchw->bnhw", weights, activations).clamp(min=0)


def _check_feature_map(path: str, features: torch.Tensor) -> None:
    if features.ndim != 4:
        raise ValueError(
            f"layer {path!r} gives a tensor of shape {tuple(features.shape)}; class activation "
            "maps "
            "need a feature map B x C x h x w"
        )


@register_saliency("gradcam")
class GradCAM(SaliencyStrategy):
    """Grad-CAM (Selvaraju et al., ICCV 2017), as Captum's ``LayerGradCam``.

    ``L^c = relu(sum_k w_k^c A_k)`` with ``w_k^c = mean_{x,y} dS_c / dA_k(x, y)`` for the
    feature map A of ``layer``; bilinearly up-sampled to H x W, divided by its max (so in
    [0, 1]) and averaged over ``scales``. One forward pass per scale for all candidates.

    Args:
        layer: layer name; None (default): the model's last feature map by the rules of
            :func:`~dcsm_lightning.saliency.default_layers` (``relu5_3`` on our VGG
            backbones, ``layer4`` on a torchvision ResNet, else the last block at output
            stride 8-32), resolved in :meth:`setup`, before the first batch.
        at: the layer's ``"output"`` (default) or ``"input"``.
        (others): see :class:`~dcsm_lightning.saliency.SaliencyStrategy`.
    """

    def __init__(self, *, layer: str | None = None, at: At = "output", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_choice("at", at, ("input", "output"))
        self.layer = None if layer is None else str(layer)
        self.at = at
        self._defaults: dict[Any, LayerChoice] = {}

    def layer_for(self, model: nn.Module) -> str:
        """``layer``, else the model's default last feature map (see the class docstring).

        Raises:
            NoDefaultLayers: ``layer`` is None and no default rule applies to the model.
        """
        if self.layer is not None:
            return self.layer
        return cached_default_layers(self._defaults, model, "last").paths[0]

    def setup(self, model: nn.Module) -> None:
        """Resolve the layer on ``model`` before the first batch."""
        super().setup(model)
        resolve_layer(model, self.layer_for(model))

    def scale_maps(
        self, model: nn.Module, image: torch.Tensor, slots: CandidateSlots, size: tuple[int, int]
    ) -> torch.Tensor:
        path, module = resolve_layer(model, self.layer_for(model))
        result = class_gradients(
            model,
            image,
            slots,
            [(path, module)],
            self.at,
            self.seed_for(model),
            "bp",
            self.use_batched_backward(image.device),
            reduce=_spatial_mean,
        )
        features = result.activations[0]
        _check_feature_map(path, features)
        cam = weighted_activation_map(result.grads[0].transpose(0, 1), features)
        return normalize_by_max(upsample_maps(cam, size))


@register_saliency("cam")
class CAM(SaliencyStrategy):
    """Class activation maps (Zhou et al., CVPR 2016) from the classifier's weights.

    ``M^c = relu(sum_k W[c, k] A_k)`` where W (K x C) is the weight of the ``classifier``
    layer (an ``nn.Linear`` or a 1 x 1 ``nn.Conv2d``, bias left out) and A the feature map it
    is applied to: by default what the classifier reads (the FCN backbones' ``score`` layer
    reads fc7's map), else the output of ``layer`` (e.g. ``layer4`` for a ResNet whose ``fc``
    reads pooled features). Up-sampled to H x W, divided by its max and averaged over
    ``scales``. No backward pass.

    Args:
        classifier: name of the K-way classifier layer (default ``score``).
        layer: name of the feature layer whose output feeds the classifier after global
            pooling; None (default) takes the classifier's own input.
        (others): see :class:`~dcsm_lightning.saliency.SaliencyStrategy`.
    """

    def __init__(
        self,
        *,
        classifier: str = "score",
        layer: str | None = None,
        name: str | None = None,
        scales: Sequence[float] = (1.0,),
        pool: Pool | None = None,
        threshold: float = 0.5,
        min_candidates: int = 3,
    ) -> None:
        super().__init__(
            name=name, scales=scales, pool=pool, threshold=threshold, min_candidates=min_candidates
        )
        self.classifier = str(classifier)
        self.layer = None if layer is None else str(layer)

    def scale_maps(
        self, model: nn.Module, image: torch.Tensor, slots: CandidateSlots, size: tuple[int, int]
    ) -> torch.Tensor:
        cpath, cmodule = resolve_layer(model, self.classifier)
        weight = classifier_weight(cpath, cmodule)
        if weight.shape[0] != slots.num_classes:
            raise ValueError(
                f"classifier {cpath!r} has {weight.shape[0]} outputs but there are "
                f"{slots.num_classes} classes"
            )
        path, module = (cpath, cmodule) if self.layer is None else resolve_layer(model, self.layer)
        at = "input" if self.layer is None else "output"
        with torch.no_grad():
            with capture_tensors([(path, module)], at, requires_grad=False) as capture:
                checked_forward(model, image, slots.num_classes)
            features = capture.checked([path])[0]
        _check_feature_map(path, features)
        if features.shape[1] != weight.shape[1]:
            raise ValueError(
                f"layer {path!r} has {features.shape[1]} channels but classifier {cpath!r} "
                f"takes {weight.shape[1]}"
            )
        cam = weighted_activation_map(weight[slots.classes], features)
        return normalize_by_max(upsample_maps(cam, size))


def classifier_weight(path: str, module: nn.Module) -> torch.Tensor:
    """The K x C weight of a linear classifier: ``nn.Linear`` or a 1 x 1 ``nn.Conv2d``.

    Raises:
        ValueError: any other kind of layer.
    """
    if isinstance(module, nn.Linear):
        return module.weight.detach()
    if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1:
        return module.weight.detach()[:, :, 0, 0]
    raise ValueError(
        f"classifier {path!r} is a {type(module).__name__}; CAM needs an nn.Linear or a "
        "1 x 1 nn.Conv2d"
    )
