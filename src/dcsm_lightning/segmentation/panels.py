"""Pictures of maps: :func:`heatmap_overlay` (one map over its image) and the loggers' grids
(image | top-candidate heatmap | mask | overlay, one row per image)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor
from torchvision.utils import make_grid

from dcsm_lightning.data.adapter import rgb_from_image
from dcsm_lightning.palette import blend_overlay, colorize_heatmap, colorize_labels
from dcsm_lightning.segmentation.methods import Method
from dcsm_lightning.segmentation.output import SegmentationOutput

COLUMNS = ("image", "heatmap", "mask", "overlay")


def top_candidate(maps: Tensor, candidates: Tensor, scores: Tensor | None = None) -> int | None:
    """Index of the candidate to show for one image, or None when there is no candidate.

    Args:
        maps: float K x H x W.
        candidates: bool K.
        scores: optional float K (e.g. ``probs``): the highest-scoring candidate wins;
            without it, the candidate with the largest total saliency.
    """
    if not bool(candidates.any()):
        return None
    key = scores.float() if scores is not None else maps.flatten(1).float().sum(dim=1)
    return int(key.masked_fill(~candidates.bool(), float("-inf")).argmax())


def panel_data(out: SegmentationOutput, name: str, refiners: list[str]) -> dict[str, Tensor]:
    """:func:`panel_grid`'s arguments (on the CPU) for the maps ``name`` of a batch's output:
    its masks refined by the first of ``refiners`` when there are any, else its plain masks."""
    shown = Method(name, refiners[0]) if refiners else Method(name)
    shown = shown if shown in out.masks else Method(name)
    return {
        "rgb": out.batch.rgb.cpu(),
        "maps": out.maps[name].cpu(),
        "masks": out.masks[shown].cpu(),
        "candidates": out.candidates.cpu(),
    }


def panel_grid(
    rgb: Tensor,
    maps: Tensor,
    masks: Tensor,
    candidates: Tensor,
    max_images: int = 4,
    scores: Tensor | None = None,
    cmap: str = "jet",
    padding: int = 2,
) -> Tensor:
    """Tile the first ``max_images`` images as rows of image | heatmap | mask | overlay.

    Args:
        rgb: uint8 B x H x W x 3 (the batch's ``rgb``).
        maps: float B x K x H x W in [0, 1] (one strategy's ``outputs["maps"]``).
        masks: int B x H x W in [0, 255], 255 = void (one ``outputs["masks"]`` entry).
        candidates: bool B x K.
        max_images: at most this many rows.
        scores: optional float B x K choosing the candidate shown (see :func:`top_candidate`);
            a row without candidates shows the colormap's zero.
        cmap: matplotlib colormap of the heatmap column.
        padding: pixels between tiles (torchvision ``make_grid``).

    Returns:
        uint8 3 x (n * (H + padding) + padding) x (4 * (W + padding) + padding) with
        n = min(B, max_images).

    Raises:
        ValueError: the shapes disagree or ``max_images`` < 1.
    """
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb must be B x H x W x 3, got shape {tuple(rgb.shape)}")
    batch, height, width = rgb.shape[:3]
    if maps.ndim != 4 or maps.shape[0] != batch or tuple(maps.shape[2:]) != (height, width):
        raise ValueError(f"maps must be {batch} x K x {height} x {width}, got {tuple(maps.shape)}")
    if tuple(masks.shape) != (batch, height, width):
        raise ValueError(f"masks must be {batch} x {height} x {width}, got {tuple(masks.shape)}")
    if tuple(candidates.shape) != tuple(maps.shape[:2]):
        raise ValueError(
            f"candidates must be {tuple(maps.shape[:2])}, got {tuple(candidates.shape)}"
        )
    count = min(batch, max_images)
    tiles: list[Tensor] = []
    for b in range(count):
        image = rgb[b].detach().cpu().to(torch.uint8).numpy()
        labels = masks[b].detach().cpu().numpy()
        chosen = top_candidate(
            maps[b].detach().cpu(),
            candidates[b].detach().cpu(),
            scores[b].detach().cpu() if scores is not None else None,
        )
        heat = (
            maps[b, chosen].detach().cpu().float().clamp(0, 1).numpy()
            if chosen is not None
            else np.zeros((height, width), dtype=np.float32)
        )
        row = (image, colorize_heatmap(heat, cmap), colorize_labels(labels))
        row += (blend_overlay(image, labels),)
        tiles.extend(torch.from_numpy(np.ascontiguousarray(t)).permute(2, 0, 1) for t in row)
    return make_grid(tiles, nrow=len(COLUMNS), padding=padding)


def log_panels(logger: Any, tag: str, grid: Tensor, step: int) -> bool:
    """Log a ``panel_grid`` picture to every logger that takes images.

    ``TensorBoardLogger`` gets ``experiment.add_image(tag, grid, step)``; loggers without
    image support (``CSVLogger``, None) are left alone, untouched (their folders are not
    even created).

    Args:
        logger: a logger, a list of loggers (``trainer.loggers``) or None.
        tag: the image's name in the logger.
        grid: uint8 3 x H x W.
        step: global step.

    Returns:
        True when at least one logger took the picture.
    """
    loggers: Iterable[Any]
    if logger is None:
        loggers = ()
    elif isinstance(logger, (list, tuple)):
        loggers = logger
    else:
        loggers = (logger,)
    logged = False
    for one in loggers:
        if isinstance(one, TensorBoardLogger):
            one.experiment.add_image(tag, grid, global_step=step, dataformats="CHW")
            logged = True
    return logged


def heatmap_overlay(
    image: Any, heat: Any, alpha: float = 0.5, cmap: str = "jet"
) -> np.ndarray:
    """A saliency map's colours blended over its image (like pytorch-grad-cam's
    ``show_cam_on_image``): ``(1 - alpha) * image + alpha * colorize_heatmap(heat)``.

    Args:
        image: the picture: uint8 H x W x 3 (RGB), or a float tensor 3 x H x W
            (or 1 x 3 x H x W) normalised with ImageNet's mean and std, as a model reads it.
        heat: float H x W in [0, 1] (one class's map, e.g. ``maps[b, c]``), a tensor or an
            array.
        alpha: opacity of the colour map, in [0, 1].
        cmap: a matplotlib colormap name.

    Returns:
        uint8 H x W x 3 RGB.

    Raises:
        ValueError: an image that is neither, sizes that differ, or ``alpha`` outside [0, 1].

    Example:
        >>> rgb = np.full((2, 2, 3), 200, np.uint8)
        >>> heatmap_overlay(rgb, np.zeros((2, 2)), alpha=0.5)[0, 0].tolist()  # jet(0) = navy
        [100, 100, 164]
    """
    rgb = _as_rgb(image)
    heat = heat.detach().cpu().float().numpy() if hasattr(heat, "detach") else np.asarray(heat)
    if heat.shape != rgb.shape[:2]:
        raise ValueError(f"heat must be H x W = {rgb.shape[:2]} (the image's), got {heat.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    colors = colorize_heatmap(heat, cmap).astype(np.float32)
    out = rgb.astype(np.float32) * (1 - alpha) + colors * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)



def _as_rgb(image: Any) -> np.ndarray:
    """uint8 H x W x 3 from itself or from an ImageNet-normalised (1 x) 3 x H x W image."""
    if isinstance(image, Tensor):
        if image.ndim == 3 and image.is_floating_point():
            image = image[None]
        if image.ndim == 4 and image.shape[:2] == (1, 3) and image.is_floating_point():
            return rgb_from_image(image.detach().cpu())[0].numpy()
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        return image
    raise ValueError(
        "image must be uint8 H x W x 3 or a normalised float tensor 3 x H x W, got "
        f"{image.dtype} of shape {image.shape}"
    )
