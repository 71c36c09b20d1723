"""What every strategy checks and guards around its model: the image and candidate checks, a
forward checked to give class scores, the rescaling of the image per scale and the model
state (eval mode, frozen parameters) restored after the maps, even on error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from dcsm_lightning.saliency.pooling import pool_scores

__all__ = [
    "check_candidates",
    "check_choice",
    "check_image",
    "checked_forward",
    "max_pool_scores",
    "preserved_model_state",
    "rescale",
]


@contextmanager
def preserved_model_state(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and ``requires_grad=False`` inside; every flag restored on exit, even on error."""
    training = [(m, m.training) for m in model.modules()]
    requires = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in requires:
            p.requires_grad_(False)
        yield model
    finally:
        for m, flag in training:
            m.training = flag
        for p, flag in requires:
            p.requires_grad_(flag)


def check_image(image: object) -> None:
    """Raise ValueError unless ``image`` is a finite float tensor B x C x H x W with B >= 1."""
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"image must be a float tensor B x 3 x H x W, got {type(image).__name__}")
    if image.ndim != 4 or not image.is_floating_point() or image.shape[0] == 0:
        raise ValueError(
            f"image must be a float tensor B x 3 x H x W, got {image.dtype} "
            f"of shape {tuple(image.shape)}"
        )
    if not torch.isfinite(image).all():
        raise ValueError("image contains NaN or Inf")


def check_candidates(candidates: object, batch: int, num_classes: int | None = None) -> None:
    """Raise ValueError unless ``candidates`` is a bool tensor B x K (K checked when given)."""
    if not isinstance(candidates, torch.Tensor) or candidates.dtype != torch.bool:
        got = (
            candidates.dtype if isinstance(candidates, torch.Tensor) else type(candidates).__name__
        )
        raise ValueError(f"candidates must be a bool tensor B x K, got {got}")
    if candidates.ndim != 2 or candidates.shape[0] != batch:
        raise ValueError(
            f"candidates must have shape B x K with B = {batch} (the image batch), "
            f"got {tuple(candidates.shape)}"
        )
    if num_classes is not None and candidates.shape[1] != num_classes:
        raise ValueError(
            f"candidates has K = {candidates.shape[1]} classes but the model outputs {num_classes}"
        )


def checked_forward(
    model: nn.Module, image: torch.Tensor, num_classes: int | None = None
) -> torch.Tensor:
    """``model(image)``, checked to be finite scores B x K or a score map B x K x h x w.

    Raises:
        ValueError: the output is not a tensor of one of those shapes (K = ``num_classes``
            when given; a mismatch is reported against ``candidates``) or has NaN / Inf.
    """
    out = model(image)
    batch = image.shape[0]
    if not isinstance(out, torch.Tensor) or out.ndim not in (2, 4) or out.shape[0] != batch:
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"model output must be class scores B x K or a score map B x K x h x w "
            f"(B = {batch}), got {got}"
        )
    if num_classes is not None and out.shape[1] != num_classes:
        raise ValueError(
            f"candidates has K = {num_classes} classes but the model outputs {out.shape[1]}"
        )
    if not torch.isfinite(out).all():
        raise ValueError("model output (class scores) contains NaN or Inf")
    return out


def max_pool_scores(output: torch.Tensor) -> torch.Tensor:
    """Global max pooling of a score map B x K x h x w to B x K (B x K passes through)."""
    return pool_scores(output, "max")


def rescale(image: torch.Tensor, scale: float) -> torch.Tensor:
    """Resize B x C x H x W to ``round(scale*H) x round(scale*W)`` bilinearly."""
    height, width = image.shape[-2:]
    size = (max(1, round(scale * height)), max(1, round(scale * width)))
    if size == (height, width):
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False)


def check_choice(arg: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise ValueError unless ``value`` (of the option ``arg``) is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{arg} must be one of {choices}, got {value!r}")
