"""Segmentation networks for the second stage: image B x 3 x H x W -> logits B x L x H x W.

``L = K + 1`` labels (0 = background, class k -> k + 1). Three heads:

- ``largefov``: DeepLab-LargeFOV (Chen et al., ICLR 2015) on our VGG backbones (``vgg16``,
  ``vgg_small``): pool4 and pool5 keep the resolution (3 x 3, stride 1), conv5 is dilated by 2,
  fc6 is a 3 x 3 convolution dilated by ``dilation``, so the output stride is 8; the scores are
  upsampled bilinearly to the input size. Its layer names are the classifier's, so a
  :class:`~dcsm_lightning.models.MultiLabelFCN` checkpoint initialises it.
- ``deeplabv3_resnet50`` and ``fcn_resnet50``: torchvision's, built with ``weights=None``.

Weights come from a file or torch's hub cache (:func:`load_segmenter_weights`), never from the
internet unless ``allow_download``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from dcsm_lightning.models.backbones import (
    VGGFCN,
    create_backbone,
    torchvision_vgg16_key_map,
    vgg_head,
)
from dcsm_lightning.models.pretrained import resolve_weights

HEADS = ("largefov", "deeplabv3_resnet50", "fcn_resnet50")


class LargeFOV(nn.Module):
    """DeepLab-LargeFOV on a registered VGG backbone (``features``, ``head``, ``score``).

    Args:
        num_labels: L, the output channels (background + K classes).
        backbone: a registered :class:`~dcsm_lightning.models.VGGFCN` backbone name.
        dilation: the dilation (and padding) of the 3 x 3 fc6 (DeepLab-LargeFOV: 12). Choose it
            below the side of the stride-8 feature map (S / 8), or fc6 only sees padding.
        width: fc6 / fc7 channels; None: the backbone's fc width, at most 1024 (DeepLab's).

    Shape:
        input float B x 3 x H x W; output float B x L x H x W (raw scores).
    """

    def __init__(
        self, num_labels: int, backbone: str = "vgg16", dilation: int = 12, width: int | None = None
    ) -> None:
        super().__init__()
        if dilation < 1:
            raise ValueError(f"dilation must be >= 1, got {dilation}")
        vgg = create_backbone(backbone, num_labels)
        if not isinstance(vgg, VGGFCN):
            raise ValueError(f"head 'largefov' needs a VGG backbone, got {backbone!r}")
        spec = vgg.spec
        width = width or min(spec.fc_width, 1024)
        features = vgg.features
        for pool in ("pool4", "pool5"):
            setattr(features, pool, nn.MaxPool2d(3, stride=1, padding=1))
        for j in (1, 2, 3):
            old = getattr(features, f"conv5_{j}")
            setattr(
                features,
                f"conv5_{j}",
                nn.Conv2d(old.in_channels, old.out_channels, 3, padding=2, dilation=2),
            )
        self.features = features
        fc6 = nn.Conv2d(spec.widths[-1], width, 3, padding=dilation, dilation=dilation)
        self.head = vgg_head(fc6, spec)
        self.score = nn.Conv2d(width, num_labels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Image B x 3 x H x W -> logits B x L x H x W (stride-8 scores, bilinear upsampling)."""
        scores = self.score(self.head(self.features(image)))
        return F.interpolate(scores, size=image.shape[-2:], mode="bilinear", align_corners=False)


class TorchvisionSegmenter(nn.Module):
    """A torchvision segmentation model whose ``forward`` returns ``model(image)["out"]``.

    Args:
        name: ``deeplabv3_resnet50`` or ``fcn_resnet50`` (built with ``weights=None``,
            ``weights_backbone=None``, no auxiliary head).
        num_labels: L, the output channels.
    """

    def __init__(self, name: str, num_labels: int) -> None:
        super().__init__()
        from torchvision.models import segmentation

        factory = getattr(segmentation, name)
        self.model = factory(
            weights=None, weights_backbone=None, num_classes=num_labels, aux_loss=False
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Image B x 3 x H x W -> logits B x L x H x W."""
        return self.model(image)["out"]


def create_segmenter(
    head: str,
    num_labels: int,
    backbone: str | None = None,
    dilation: int = 12,
    width: int | None = None,
) -> nn.Module:
    """Build a segmentation network with random weights.

    Args:
        head: one of :data:`HEADS`.
        num_labels: L = K + 1.
        backbone: for ``largefov`` a VGG backbone name (None: ``vgg16``); the torchvision
            heads take None or ``"resnet50"``.
        dilation, width: ``largefov`` only (see :class:`LargeFOV`).

    Raises:
        ValueError: unknown head, or a backbone the head cannot use.
    """
    if head == "largefov":
        return LargeFOV(num_labels, backbone or "vgg16", dilation, width)
    if head in HEADS:
        if backbone not in (None, "resnet50"):
            raise ValueError(f"head {head!r} has a ResNet-50 backbone; got backbone={backbone!r}")
        return TorchvisionSegmenter(head, num_labels)
    raise ValueError(f"Unknown head {head!r}; known heads: {', '.join(HEADS)}")


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The backbone's parameters of a :func:`create_segmenter` network: ``largefov``'s conv
    blocks (``features``, conv1_1 - conv5_3), a torchvision model's ``backbone``; the rest
    (``largefov``'s fc6 / fc7 / score, a torchvision ``classifier``) is the head.

    Raises:
        TypeError: ``model`` is not a :func:`create_segmenter` network.
    """
    if isinstance(model, LargeFOV):
        return list(model.features.parameters())
    if isinstance(model, TorchvisionSegmenter):
        return list(model.model.backbone.parameters())
    raise TypeError(f"expected a create_segmenter network, got {type(model).__name__}")


def _renamings() -> list[Callable[[str], str | None]]:
    """Ways to read a foreign state dict's keys as ours (None drops a key)."""
    tv_vgg = torchvision_vgg16_key_map()
    return [
        lambda k: k,  # our own layout
        lambda k: k.removeprefix("backbone.") if k.startswith("backbone.") else None,  # classifier
        lambda k: k.removeprefix("net.") if k.startswith("net.") else None,  # SegmentationNet
        lambda k: tv_vgg.get(k),  # torchvision vgg16
        lambda k: None if k.startswith("fc.") else f"model.backbone.{k}",  # torchvision resnet50
        lambda k: f"model.{k}",  # torchvision segmentation model
    ]


def fit_state_dict(
    model: nn.Module, state: dict[str, torch.Tensor], source: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The tensors of ``state`` that fit ``model``, under the key layout that fits it best.

    Tries our own keys, a classifier checkpoint's (``backbone.`` prefix), a
    :class:`SegmentationNet` checkpoint's (``net.``), torchvision's ``vgg16`` and ``resnet50``
    (ImageNet) and torchvision's segmentation models; keeps the tensors whose shape matches.

    Returns:
        (the fitting tensors under ``model``'s keys, the names of ``model``'s tensors left as
        they were).

    Raises:
        ValueError: no tensor fits (names ``source``).
    """
    own = model.state_dict()
    best: dict[str, torch.Tensor] = {}
    for rename in _renamings():
        renamed = {rename(k): v for k, v in state.items()}
        fitting = {
            k: v for k, v in renamed.items() if k in own and tuple(v.shape) == tuple(own[k].shape)
        }
        if len(fitting) > len(best):
            best = fitting
    if not best:
        raise ValueError(
            f"weights in {source!r} do not fit this network: no tensor matches by name and "
            f"shape (its keys begin {list(state)[:3]}, the network's {list(own)[:3]})"
        )
    return best, [k for k in own if k not in best]


def load_segmenter_weights(
    model: nn.Module, pretrained: str, allow_download: bool = False
) -> list[str]:
    """Load ``pretrained`` (a file or ``"hub-cache"``) into a :func:`create_segmenter` network.

    Every tensor that fits by name and shape is copied (see :func:`fit_state_dict`): a
    classifier checkpoint initialises ``largefov``'s conv layers (and fc6 / fc7 when their
    shapes agree), ImageNet VGG-16 its conv layers, ImageNet ResNet-50 the torchvision heads'
    backbones, a torchvision segmentation file everything but a classifier of another size.
    ``"hub-cache"`` means torchvision's ImageNet file of the backbone in torch's hub cache.

    Returns:
        the names of the tensors left at their random initialisation.

    Raises:
        FileNotFoundError: the file is absent (the message says how to supply it).
        ValueError: nothing in the file fits.
    """
    if isinstance(model, TorchvisionSegmenter):
        from torchvision.models import ResNet50_Weights

        weights = ResNet50_Weights.IMAGENET1K_V1
        state = resolve_weights(
            pretrained,
            allow_download,
            url=weights.url,
            what="ResNet-50 ImageNet weights (or a torchvision segmentation weights file)",
            download=lambda: weights.get_state_dict(progress=True),
        )
    else:
        state = resolve_weights(pretrained, allow_download)
    fitting, left = fit_state_dict(model, state, pretrained)
    model.load_state_dict(fitting, strict=False)
    rank_zero_info(
        f"Loaded {len(fitting)} tensors from {pretrained}; {len(left)} keep their random "
        f"initialisation{': ' + ', '.join(left[:6]) if left else ''}"
        f"{' ...' if len(left) > 6 else ''}"
    )
    return left
