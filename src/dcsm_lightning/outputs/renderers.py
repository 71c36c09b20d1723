"""One renderer per kind of output file: an image's data -> one file on disk.

Each renderer takes the file's path, the image's :class:`ImageData` (already cut out of its
letterbox where it matters), the file's argument (see
:data:`~dcsm_lightning.outputs.layout.FileSpec`) and ``overwrite``, and writes atomically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dcsm_lightning.data.transforms import uncrop_images
from dcsm_lightning.files import save_json, save_label_png, save_overlay_png, save_rgb_png
from dcsm_lightning.palette import blend_heatmap

__all__ = ["RENDERERS", "ImageData"]


@dataclass(frozen=True)
class ImageData:
    """What the files of one image are drawn from (K classes, S x S letterbox).

    Attributes:
        image_id: the image's id.
        method: the method whose mask is written.
        label: uint8 (H, W), the mask at the size on disk (255 = void).
        extent: (h, w) of the image inside the letterbox; orig: (H, W) on disk.
        rgb: uint8 (S, S, 3). maps: float (K, S, S) in [0, 1], or None.
        probs: the K class probabilities, or None. names: the K class names, or None.
        cmap: the heatmaps' matplotlib colormap; alpha: their opacity over the image.
    """

    image_id: str
    method: str
    label: np.ndarray
    extent: tuple[int, int]
    orig: tuple[int, int]
    rgb: Tensor
    maps: Tensor | None
    probs: list[float] | None
    names: list[str] | None
    cmap: str
    alpha: float = 0.5


def render_mask(path: Path, image: ImageData, arg: Any, overwrite: bool) -> None:
    """The VOC-palette label PNG."""
    save_label_png(path, image.label, overwrite=overwrite)


def _rgb_on_disk(image: ImageData) -> np.ndarray:
    """The image cut out of its letterbox at its size on disk: uint8 H x W x 3."""
    rgb = uncrop_images(image.rgb.permute(2, 0, 1), image.extent, image.orig)
    return rgb.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def render_heatmap(path: Path, image: ImageData, name: str, overwrite: bool) -> None:
    """The map of class ``name`` blended over the image (``image.alpha``), at the size on
    disk."""
    k = image.names.index(name)
    heat = uncrop_images(image.maps[k : k + 1], image.extent, image.orig)[0].clamp(0, 1)
    colors = blend_heatmap(_rgb_on_disk(image), heat.numpy(), image.alpha, image.cmap)
    save_rgb_png(path, colors, overwrite=overwrite)


def render_overlay(path: Path, image: ImageData, arg: Any, overwrite: bool) -> None:
    """The mask drawn over the image, at the size on disk."""
    save_overlay_png(path, _rgb_on_disk(image), image.label, overwrite=overwrite)


def render_scores(path: Path, image: ImageData, candidates: list[str], overwrite: bool) -> None:
    """``{"id", "method", "scores": {class: prob}, "candidates": [class, ...]}``."""
    scores = dict(zip(image.names, image.probs, strict=True))
    record = {"id": image.image_id, "method": image.method, "scores": scores}
    save_json(path, record | {"candidates": list(candidates)}, overwrite=overwrite)


#: kind -> renderer ``(path, image, argument, overwrite)``.
RENDERERS: dict[str, Callable[[Path, ImageData, Any, bool], None]] = {
    "mask": render_mask,
    "heatmap": render_heatmap,
    "overlay": render_overlay,
    "scores": render_scores,
}
