"""The training-time random rescale shared by the classifier and the segmentation network."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_scale_range(scale_range: tuple[float, float]) -> None:
    """Raise ``ValueError`` unless ``0 < low <= high``."""
    low, high = scale_range
    if not 0 < low <= high:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")


def random_rescale(
    image: torch.Tensor, scale_range: tuple[float, float], mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Resize a batch by one ratio drawn uniformly from ``scale_range``.

    Args:
        image: float B x 3 x H x W, resized bilinearly.
        scale_range: (low, high); low == high uses that ratio.
        mask: optional int64 B x H x W label maps, resized by nearest neighbour.

    Returns:
        (image B x 3 x H' x W', mask B x H' x W' or None), H' = round(H * ratio) (at least 1).
    """
    low, high = scale_range
    ratio = float(torch.empty(()).uniform_(low, high)) if high > low else low
    if ratio == 1.0:
        return image, mask
    size = tuple(max(1, round(side * ratio)) for side in image.shape[-2:])
    image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
    if mask is not None:
        mask = F.interpolate(mask[:, None].float(), size=size, mode="nearest")[:, 0].long()
    return image, mask
