"""Label and heatmap colours: the VOID label, the PASCAL VOC palette, colour-mapped saliency
and label overlays, as uint8 RGB arrays (nothing here writes a file)."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Label id of ignored pixels (letterbox padding, VOC void): the one definition in the package.
VOID = 255


def voc_palette(num_colors: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (bit-interleaved label index).

    Returns:
        uint8 array of shape (num_colors, 3); entry 0 is black (background), 255 is the
        VOC void colour (224, 224, 192).
    """
    palette = np.zeros((num_colors, 3), dtype=np.uint8)
    for index in range(num_colors):
        label, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (label & 1) << shift
            g |= ((label >> 1) & 1) << shift
            b |= ((label >> 2) & 1) << shift
            label >>= 3
        palette[index] = (r, g, b)
    return palette



#: The 256-entry VOC palette, uint8 256 x 3.
VOC_PALETTE = voc_palette()


def check_label_map(labels: Any) -> np.ndarray:
    """An int H x W label map in [0, 255] as uint8 H x W; ValueError naming the fault otherwise."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be H x W, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"labels must lie in [0, 255], got [{labels.min()}, {labels.max()}]")
    return labels.astype(np.uint8)


def colorize_labels(labels: Any) -> np.ndarray:
    """VOC colours of a label map: int H x W in [0, 255] -> uint8 H x W x 3."""
    return VOC_PALETTE[check_label_map(labels)]


def colorize_heatmap(heat: Any, cmap: str = "jet") -> np.ndarray:
    """Colour a saliency map with a matplotlib colormap.

    Args:
        heat: float H x W with values in [0, 1] (tiny excursions from interpolation are clipped).
        cmap: any registered matplotlib colormap name ("jet", "inferno", ...).

    Returns:
        uint8 H x W x 3 RGB.
    """
    import matplotlib  # deferred: only the heatmap paths need it

    heat = np.asarray(heat, dtype=np.float64)
    if heat.ndim != 2:
        raise ValueError(f"heat must be H x W, got shape {heat.shape}")
    if heat.size:
        if not np.isfinite(heat).all():
            raise ValueError("heat contains NaN or inf")
        low, high = float(heat.min()), float(heat.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(f"heat must lie in [0, 1], got [{low:.4g}, {high:.4g}]")
    colors = matplotlib.colormaps[cmap](np.clip(heat, 0.0, 1.0), bytes=True)
    return np.ascontiguousarray(colors[..., :3])


def blend_heatmap(rgb: Any, heat: Any, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """A saliency map's colours blended over its image (like pytorch-grad-cam's
    ``show_cam_on_image``): ``(1 - alpha) * rgb + alpha * colorize_heatmap(heat, cmap)``.

    Args:
        rgb: uint8 H x W x 3.
        heat: float H x W in [0, 1].
        alpha: opacity of the colour map, in [0, 1] (1: the bare colour map).
        cmap: a matplotlib colormap name.

    Returns:
        uint8 H x W x 3.

    Example:
        >>> rgb = np.full((2, 2, 3), 200, np.uint8)
        >>> blend_heatmap(rgb, np.zeros((2, 2)), alpha=0.5)[0, 0].tolist()  # jet(0) = navy
        [100, 100, 164]
    """
    rgb = np.asarray(rgb)
    heat = np.asarray(heat)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be H x W x 3, got shape {rgb.shape}")
    if heat.shape != rgb.shape[:2]:
        raise ValueError(f"heat must be H x W = {rgb.shape[:2]} (the image's), got {heat.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    colors = colorize_heatmap(heat, cmap).astype(np.float32)
    out = rgb.astype(np.float32) * (1 - alpha) + colors * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def blend_overlay(
    rgb: Any, labels: Any, alpha: float = 0.5, background_alpha: float = 0.0
) -> np.ndarray:
    """Blend VOC label colours over an image.

    Class pixels get ``alpha`` of their palette colour, background (0) gets
    ``background_alpha`` of black (0: the image shows through unchanged), void (255) gets
    ``alpha / 3`` of the VOC void colour (a faint cream veil).

    Args:
        rgb: uint8 H x W x 3.
        labels: int H x W in [0, 255].
        alpha: opacity of class colours, in [0, 1].
        background_alpha: opacity of the background colour, in [0, 1].

    Returns:
        uint8 H x W x 3.
    """
    rgb = np.asarray(rgb)
    labels = check_label_map(labels)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[:2] != labels.shape:
        raise ValueError(
            f"rgb must be H x W x 3 matching labels {labels.shape}, got shape {rgb.shape}"
        )
    for name, value in (("alpha", alpha), ("background_alpha", background_alpha)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {value}")
    weight = np.full(labels.shape, alpha, dtype=np.float32)
    weight[labels == 0] = background_alpha
    weight[labels == VOID] = alpha / 3
    weight = weight[..., None]
    out = rgb.astype(np.float32) * (1 - weight) + VOC_PALETTE[labels].astype(np.float32) * weight
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)

