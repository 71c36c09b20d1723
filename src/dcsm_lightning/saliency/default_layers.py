"""Default layers that follow the model: which feature maps a layer-based strategy reads.

A strategy given no ``layers`` / ``layer`` asks :func:`default_layers` for the model it
serves. The rules, in order (the first that applies wins):

1. Our VGG backbones (the paper's): every layer of ``conv3_1`` ... ``conv5_3`` exists ->
   those, at their input (Table 2's blocks 3-5, as the authors' code); the last feature map
   is ``relu5_3``.
2. A torchvision ``ResNet`` inside the model -> the outputs of its stages ``layer2``,
   ``layer3``, ``layer4`` (output strides 8, 16, 32); the last feature map is ``layer4``.
3. Any other network (other torchvision families, your own): a probe forward of one
   1 x 3 x 256 x 256 image lists the model's blocks with their output strides
   (:func:`candidate_blocks`), and the last block at each of the strides 8, 16 and 32 is
   taken, at its output; the last feature map is the one at the largest of those strides.
   A block is a module that runs once and outputs a B x C x h x w tensor (h, w > 1: not a
   globally pooled vector) that is not the model's output (nor of its shape) and is not
   changed in place later. The blocks are the
   model's children, where a child whose modules span 3 or more output strides (a backbone,
   not a stage or a down-sampling block) is replaced by its own blocks, recursively: so a
   ResNet trunk gives its stages, MobileNet's ``features`` its inverted-residual blocks.

When none applies, :class:`NoDefaultLayers` (a ValueError) names the rules tried and lists
the model's candidate blocks with their strides; pass ``layers=`` / ``layer=`` then. An
explicit ``layers=`` / ``layer=`` always wins over every rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from dcsm_lightning.saliency.inputs import preserved_model_state

#: The conv layers of VGG-16 blocks 3-5, the paper's best layer set (Table 2).
BLOCKS_3_TO_5: tuple[str, ...] = tuple(f"conv{b}_{j}" for b in (3, 4, 5) for j in (1, 2, 3))
#: The last conv feature map of the VGG backbones (Grad-CAM's layer).
VGG_LAST = "relu5_3"
#: The output strides whose last blocks rule 3 takes.
PROBE_STRIDES: tuple[int, ...] = (8, 16, 32)
#: The side length of the probe image.
PROBE_SIZE = 256

Kind = Literal["blocks", "last"]


class NoDefaultLayers(ValueError):
    """No rule of :func:`default_layers` applies to the model (the message says what to pass)."""


@dataclass(frozen=True)
class Block:
    """A module whose output is a feature map: its path, output stride and channels."""

    path: str
    stride: int
    channels: int


@dataclass(frozen=True)
class LayerChoice:
    """Default layers of a model: module paths, the side read (``"input"`` / ``"output"``)
    and the rule that chose them (``"vgg"``, ``"resnet"`` or ``"probe"``)."""

    paths: tuple[str, ...]
    at: Literal["input", "output"]
    rule: str


def default_layers(model: nn.Module, kind: Kind = "blocks") -> LayerChoice:
    """The default layers of ``model`` by the rules of this module.

    Args:
        model: any ``nn.Module`` mapping B x 3 x H x W images to class scores.
        kind: ``"blocks"`` (several layers, e.g. DCSM's) or ``"last"`` (one feature map,
            e.g. Grad-CAM's).

    Raises:
        NoDefaultLayers: no rule applies (the message lists the candidate blocks).
    """
    paths = dict(model.named_modules())
    if all(any(p == n or p.endswith("." + n) for p in paths) for n in (*BLOCKS_3_TO_5, VGG_LAST)):
        if kind == "blocks":
            return LayerChoice(BLOCKS_3_TO_5, "input", "vgg")
        return LayerChoice((VGG_LAST,), "output", "vgg")
    resnet = _torchvision_resnet(model)
    if resnet is not None:
        stages = tuple(f"{resnet}.layer{i}".lstrip(".") for i in (2, 3, 4))
        return LayerChoice(stages if kind == "blocks" else stages[-1:], "output", "resnet")
    try:
        blocks = candidate_blocks(model)
    except Exception as err:  # the probe is a guess; any failure means "no default"
        raise NoDefaultLayers(_message(model, f"the probe forward failed ({err})")) from None
    chosen = [b.path for b in last_block_per_stride(blocks) if b.stride in PROBE_STRIDES]
    if not chosen:
        found = ", ".join(f"{b.path} (stride {b.stride})" for b in last_block_per_stride(blocks))
        raise NoDefaultLayers(
            _message(model, f"its blocks by output stride are: {found or 'none'}")
        )
    return LayerChoice(tuple(chosen) if kind == "blocks" else (chosen[-1],), "output", "probe")


def cached_default_layers(
    cache: dict[Any, LayerChoice], model: nn.Module, kind: Kind = "blocks"
) -> LayerChoice:
    """:func:`default_layers` through ``cache`` (keyed by the model and its module tree), so
    the probe forward runs once per model."""
    key = (id(model), kind, tuple((p, type(m).__qualname__) for p, m in model.named_modules()))
    if key not in cache:
        cache[key] = default_layers(model, kind)
    return cache[key]


def candidate_blocks(model: nn.Module, size: int = PROBE_SIZE) -> list[Block]:
    """The model's feature blocks in forward order, from a probe forward of one image.

    See the module docstring for what counts as a block. The model's state (training flags,
    ``requires_grad``) is left as it was; the probe runs in eval mode without autograd.

    Args:
        model: any ``nn.Module`` taking B x 3 x H x W images.
        size: the probe image's side length (its output stride is ``size / h``).

    Returns:
        one :class:`Block` per block, in the order the blocks finish.
    """
    records: list[tuple[str, torch.Tensor, int]] = []
    calls: dict[str, int] = {}

    def hook(path: str) -> Any:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            calls[path] = calls.get(path, 0) + 1
            if isinstance(output, torch.Tensor) and output.ndim == 4:
                records.append((path, output, output._version))

        return record

    param = next(model.parameters(), None)
    image = torch.zeros(
        1,
        3,
        size,
        size,
        device=param.device if param is not None else None,
        dtype=param.dtype if param is not None and param.is_floating_point() else None,
    )
    named = [(p, m) for p, m in model.named_modules() if p]
    handles = [m.register_forward_hook(hook(p)) for p, m in named]
    try:
        with torch.inference_mode(False), torch.no_grad(), preserved_model_state(model):
            out = model(image)
    finally:
        for handle in handles:
            handle.remove()
    kept: dict[str, tuple[int, int, int]] = {}  # path -> (finish order, stride, channels)
    for order, (path, tensor, version) in enumerate(records):
        if (
            calls[path] == 1
            and min(tensor.shape[-2:]) > 1
            and tensor._version == version
            and not (isinstance(out, torch.Tensor) and (tensor is out or tensor.shape == out.shape))
        ):
            kept[path] = (order, round(size / tensor.shape[-2]), int(tensor.shape[1]))
    units = _units(model, "", kept)
    return [Block(p, kept[p][1], kept[p][2]) for p in sorted(units, key=lambda p: kept[p][0])]


def _units(module: nn.Module, prefix: str, kept: dict[str, tuple[int, int, int]]) -> list[str]:
    """The blocks under ``module``: children, with those spanning 3 or more strides (a
    backbone, not a stage or a down-sampling block) replaced by their own blocks."""
    units = []
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        span = {v[1] for p, v in kept.items() if p == path or p.startswith(path + ".")}
        if len(span) >= 3:
            units += _units(child, path, kept)
        elif path in kept:
            units.append(path)
    return units


def last_block_per_stride(blocks: Sequence[Block]) -> list[Block]:
    """For each output stride, ascending, the block that finishes last at that stride."""
    last: dict[int, Block] = {}
    for block in blocks:
        last[block.stride] = block
    return [last[s] for s in sorted(last)]


def _torchvision_resnet(model: nn.Module) -> str | None:
    """The path of the first torchvision ``ResNet`` in ``model`` ("" for the model), or None."""
    for path, module in model.named_modules():
        cls = type(module)
        if cls.__name__ == "ResNet" and cls.__module__.startswith("torchvision."):
            return path
    return None


def _message(model: nn.Module, found: str) -> str:
    return (
        f"no default layers for {type(model).__name__}: it is not one of our VGG backbones "
        f"({BLOCKS_3_TO_5[0]} ... {BLOCKS_3_TO_5[-1]}, {VGG_LAST} not found), has no "
        f"torchvision ResNet, and a probe forward of a 1 x 3 x {PROBE_SIZE} x {PROBE_SIZE} image "
        f"found no block at output stride {', '.join(map(str, PROBE_STRIDES))}; {found}. "
        "Pass layers=[...] (layer=... for one feature map), e.g. the blocks listed"
    )
