"""Fully convolutional VGG classifiers with the paper's layer names, and their registry.

Every backbone maps an image B x 3 x H x W to a class score map B x K x h x w. Conv layers are
reachable by the names the paper uses (``conv1_1`` ... ``conv5_3``, ``fc6``, ``fc7``) and every
ReLU is its own non-inplace ``nn.ReLU`` module (``relu3_1`` ...), so guided back-propagation can
hook it.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

#: Convolutions per VGG block (VGG-16: 2, 2, 3, 3, 3).
VGG16_BLOCKS: tuple[int, ...] = (2, 2, 3, 3, 3)


@dataclass(frozen=True)
class VGGSpec:
    """Shape of a fully convolutional VGG: block widths, fc width, fc6 kernel, BatchNorm."""

    widths: tuple[int, ...]
    fc_width: int
    fc6_kernel: int
    fc6_padding: int
    batch_norm: bool
    dropout: float


class VGGFCN(nn.Module):
    """VGG made fully convolutional: ``features`` (conv blocks), ``head`` (fc6/fc7), ``score``.

    Args:
        num_classes: K, the number of output channels of the 1 x 1 ``score`` layer.
        spec: the layer widths and options.

    Shape:
        input: float B x 3 x H x W; output: float B x K x h x w (raw class scores, no sigmoid).
    """

    def __init__(self, num_classes: int, spec: VGGSpec) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if len(spec.widths) != len(VGG16_BLOCKS):
            raise ValueError(
                f"spec.widths needs one width per VGG block ({len(VGG16_BLOCKS)}), "
                f"got {list(spec.widths)}"
            )
        self.spec = spec
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_ch = 3
        for block, (n_convs, width) in enumerate(
            zip(VGG16_BLOCKS, spec.widths, strict=True), start=1
        ):
            for j in range(1, n_convs + 1):
                layers[f"conv{block}_{j}"] = nn.Conv2d(in_ch, width, 3, padding=1)
                if spec.batch_norm:
                    layers[f"bn{block}_{j}"] = nn.BatchNorm2d(width)
                layers[f"relu{block}_{j}"] = nn.ReLU(inplace=False)
                in_ch = width
            layers[f"pool{block}"] = nn.MaxPool2d(2, stride=2)
        self.features = nn.Sequential(layers)
        fc6 = nn.Conv2d(in_ch, spec.fc_width, spec.fc6_kernel, padding=spec.fc6_padding)
        self.head = vgg_head(fc6, spec)
        self.score = nn.Conv2d(spec.fc_width, num_classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Image B x 3 x H x W -> class score map B x K x h x w."""
        return self.score(self.head(self.features(image)))

    @property
    def min_input_size(self) -> int:
        """The smallest input side with a score map: five 2 x 2 pools, then fc6's kernel."""
        return 2 ** len(VGG16_BLOCKS) * max(1, self.spec.fc6_kernel - 2 * self.spec.fc6_padding)


def vgg_head(fc6: nn.Conv2d, spec: VGGSpec) -> nn.Sequential:
    """fc6 -> [bn6] -> relu6 -> drop6 -> fc7 (1 x 1) -> [bn7] -> relu7 -> drop7.

    The BatchNorm layers are there when ``spec.batch_norm`` is (and then the head also loads
    state dicts saved before it had them); fc7 keeps fc6's width.
    """
    width = fc6.out_channels
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for n, conv in ((6, fc6), (7, nn.Conv2d(width, width, 1))):
        layers[f"fc{n}"] = conv
        if spec.batch_norm:
            layers[f"bn{n}"] = nn.BatchNorm2d(width)
        layers[f"relu{n}"] = nn.ReLU(inplace=False)
        layers[f"drop{n}"] = nn.Dropout2d(spec.dropout)
    head = nn.Sequential(layers)
    if spec.batch_norm:
        head.register_load_state_dict_pre_hook(_identity_norm_for_old_heads)
    return head


def _identity_norm_for_old_heads(
    head: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any
) -> None:
    """Load-state-dict pre-hook of a BatchNorm :func:`vgg_head`: accept a state dict saved
    before the head had ``bn6`` / ``bn7`` (fc6 -> ReLU -> fc7 -> ReLU).

    The missing BatchNorm layers get parameters that make them the identity in eval mode (mean
    0, variance 1 - eps, weight 1, bias 0), so the checkpoint predicts exactly as before;
    training it further normalises as usual.
    """
    if f"{prefix}fc6.weight" not in state_dict or f"{prefix}bn6.weight" in state_dict:
        return
    for name in ("bn6", "bn7"):
        norm = head.get_submodule(name)
        key = f"{prefix}{name}."
        state_dict[key + "weight"] = torch.ones_like(norm.weight)
        state_dict[key + "bias"] = torch.zeros_like(norm.bias)
        state_dict[key + "running_mean"] = torch.zeros_like(norm.running_mean)
        state_dict[key + "running_var"] = torch.full_like(norm.running_var, 1.0 - norm.eps)
        state_dict[key + "num_batches_tracked"] = torch.zeros_like(norm.num_batches_tracked)
    warnings.warn(
        "this checkpoint predates BatchNorm in the VGG head (bn6 / bn7); it is loaded with "
        "identity BatchNorm there and predicts as before",
        stacklevel=2,
    )


def torchvision_vgg16_key_map() -> dict[str, str]:
    """Map torchvision ``vgg16`` state-dict keys to :class:`VGGFCN` keys.

    ``features.{i}`` conv layers become ``features.conv{b}_{j}``; ``classifier.0`` (fc6, a
    25088 x 4096 linear layer) and ``classifier.3`` (fc7) become ``head.fc6`` / ``head.fc7``
    (reshaped to convolutions by :func:`load_torchvision_vgg16`). ``classifier.6`` (the
    ImageNet classifier) has no counterpart.
    """
    mapping: dict[str, str] = {}
    index = 0
    for block, n_convs in enumerate(VGG16_BLOCKS, start=1):
        for j in range(1, n_convs + 1):
            for param in ("weight", "bias"):
                mapping[f"features.{index}.{param}"] = f"features.conv{block}_{j}.{param}"
            index += 2  # conv, relu
        index += 1  # pool
    for tv_name, ours in (("classifier.0", "head.fc6"), ("classifier.3", "head.fc7")):
        for param in ("weight", "bias"):
            mapping[f"{tv_name}.{param}"] = f"{ours}.{param}"
    return mapping


def load_torchvision_vgg16(model: VGGFCN, state_dict: dict[str, torch.Tensor]) -> None:
    """Copy a torchvision VGG-16 state dict into ``model`` (all layers but ``score``).

    Raises:
        ValueError: a key is missing or a tensor does not fit (the message names it).
    """
    ours = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    for tv_key, our_key in torchvision_vgg16_key_map().items():
        if tv_key not in state_dict:
            raise ValueError(f"VGG-16 weights lack {tv_key!r}: is this a torchvision vgg16 file?")
        tensor = state_dict[tv_key]
        target_shape = ours[our_key].shape
        if tensor.numel() != ours[our_key].numel():
            raise ValueError(
                f"VGG-16 weight {tv_key!r} has shape {tuple(tensor.shape)}; "
                f"{our_key!r} needs {tuple(target_shape)}"
            )
        converted[our_key] = tensor.reshape(target_shape)
    missing, _ = model.load_state_dict(converted, strict=False)
    left = [k for k in missing if not k.startswith("score.")]
    if left:
        raise ValueError(f"VGG-16 weights left these layers uninitialised: {left}")


BackboneFactory = Callable[[int], nn.Module]
_BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator: register ``factory(num_classes) -> nn.Module`` under ``name``."""

    def decorator(factory: BackboneFactory) -> BackboneFactory:
        if name in _BACKBONES:
            warnings.warn(
                f"backbone {name!r} is registered twice; the later one wins", stacklevel=2
            )
        _BACKBONES[name] = factory
        return factory

    return decorator


def list_backbones() -> list[str]:
    """Names of the registered backbones, sorted."""
    return sorted(_BACKBONES)


def create_backbone(name: str, num_classes: int) -> nn.Module:
    """Build the backbone ``name`` with ``num_classes`` output channels (random weights).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in _BACKBONES:
        raise ValueError(
            f"Unknown backbone {name!r}; known backbones: {', '.join(list_backbones())}"
        )
    return _BACKBONES[name](num_classes)


def _spec(widths: Sequence[int], fc_width: int, fc6_kernel: int, batch_norm: bool) -> VGGSpec:
    return VGGSpec(
        tuple(widths),
        fc_width,
        fc6_kernel,
        fc6_kernel // 2 if batch_norm else 0,
        batch_norm,
        dropout=0.5 if not batch_norm else 0.0,
    )


@register_backbone("vgg16")
def vgg16(num_classes: int) -> VGGFCN:
    """The paper's VGG-16: widths 64-512, fc6 a 7 x 7 conv (4096), fc7 1 x 1, dropout 0.5.

    A 500 x 500 input gives a 9 x 9 score map (pool5 is 15 x 15).
    """
    return VGGFCN(num_classes, _spec((64, 128, 256, 512, 512), 4096, 7, batch_norm=False))


@register_backbone("vgg_small")
def vgg_small(num_classes: int) -> VGGFCN:
    """VGG-16's topology and layer names at widths 16-128 with BatchNorm, for CPU demos.

    fc6 is a padded 3 x 3 conv (256 channels) so that small inputs keep a score map. fc6 and
    fc7 are followed by BatchNorm (``bn6``, ``bn7``) like every conv layer: without it about a
    third of their channels died in training and the classifier learnt slowly.
    """
    return VGGFCN(num_classes, _spec((16, 32, 64, 128, 128), 256, 3, batch_norm=True))
