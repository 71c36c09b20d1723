"""Multi-scale and flipped inference of a segmentation network (DeepLab's ``eval_scales`` and
``add_flipped_images``): the softmax averaged over resized and mirrored copies of the input."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F


def check_eval_scales(scales: Sequence[float]) -> None:
    """Raise ``ValueError`` unless ``scales`` is a non-empty list of positive ratios."""
    if len(scales) == 0 or any(not s > 0 for s in scales):
        raise ValueError(f"eval_scales must be a non-empty list of ratios > 0, got {list(scales)}")


def multi_scale_logits(
    net: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
) -> torch.Tensor:
    """Average a segmentation network's softmax over input scales and left-right flips.

    Each copy of ``image`` is resized bilinearly by a ratio in ``scales`` (and, with ``flip``,
    also mirrored), passed through ``net``; its logits are resized back to H x W (and mirrored
    back) and turned into probabilities, which are averaged. One scale of 1 without ``flip`` is
    ``net(image)`` itself.

    Args:
        net: image B x 3 x h x w -> logits B x L x h x w (any h, w).
        image: float B x 3 x H x W (normalised).
        scales: resize ratios, each > 0 (e.g. ``(1.0, 1.25, 1.5)``).
        flip: also run every scale on the mirrored image.

    Returns:
        float B x L x H x W "logits": the log of the averaged probabilities, so their softmax
        is that average and their argmax its winner.

    Raises:
        ValueError: empty ``scales`` or a ratio <= 0.
    """
    check_eval_scales(scales)
    if list(scales) == [1.0] and not flip:
        return net(image)
    size = image.shape[-2:]
    total = None
    for scale in scales:
        resized = image
        if scale != 1.0:
            side = tuple(max(1, round(s * scale)) for s in size)
            resized = F.interpolate(image, size=side, mode="bilinear", align_corners=False)
        for mirrored in (False, True) if flip else (False,):
            logits = net(resized.flip(-1) if mirrored else resized)
            if logits.shape[-2:] != size:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            probs = logits.softmax(dim=1)
            probs = probs.flip(-1) if mirrored else probs
            total = probs if total is None else total + probs
    copies = len(scales) * (2 if flip else 1)
    return (total / copies).clamp_min(torch.finfo(total.dtype).tiny).log()
