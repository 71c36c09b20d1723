"""Pictures of a batch's segmentation: :func:`heatmap_overlay` (one map over its image),
:func:`grid_rows` (the rows of the labelled grid, :func:`~dcsm_lightning.outputs.grid.grid_figure`)
gathered over batches by :class:`GridCollector`, and :func:`log_figure` (to TensorBoard)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

from dcsm_lightning.data.adapter import rgb_from_image
from dcsm_lightning.outputs.canvas import figure_rgb
from dcsm_lightning.outputs.grid import GridRow, grid_figure
from dcsm_lightning.palette import blend_heatmap
from dcsm_lightning.segmentation.methods import Method
from dcsm_lightning.segmentation.output import SegmentationOutput

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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


def grid_rows(
    out: SegmentationOutput,
    map_name: str,
    label_names: Sequence[str],
    refiner: str | None = None,
    max_images: int = 4,
) -> list[GridRow]:
    """The grid rows of the first ``max_images`` images of a batch's output.

    Each image is cut out of its letterbox (``batch.extent``); its row shows the ground truth
    (``batch.mask``) when the batch has one, the map ``out.maps[map_name]`` of its
    highest-scoring candidate (named with its probability), the masks of ``map_name`` and,
    with ``refiner``, those refined by it when ``out.masks`` holds them.

    Args:
        out: one batch's output (B images, K classes, S x S letterbox).
        map_name: the maps shown (a strategy's name); its plain masks fill the mask column.
        label_names: the K + 1 label names, background first.
        refiner: a refiner's name (``"crf"``): its masks fill the ``+ CRF`` column.
        max_images: at most this many rows (>= 0).
    """
    refined = Method(map_name, refiner) if refiner else None
    refined = refined if refined in out.masks else None
    plain = out.masks[Method(map_name)].detach().cpu()
    maps = out.maps.get(map_name)
    maps = None if maps is None else maps.detach().cpu()
    probs, candidates = out.probs.detach().cpu().float(), out.candidates.detach().cpu()
    truth = out.batch.mask
    rows = []
    for b in range(min(len(out.batch.ids), max(max_images, 0))):
        h, w = (int(v) for v in out.batch.extent[b])
        heat, note = None, ""
        if maps is not None:
            k = top_candidate(maps[b], candidates[b], probs[b])
            note = "no candidate" if k is None else f"{label_names[k + 1]} {probs[b, k]:.2f}"
            heat = None if k is None else maps[b, k, :h, :w].float().clamp(0, 1).numpy()
        rows.append(
            GridRow(
                image=out.batch.rgb[b, :h, :w].detach().cpu().numpy().astype(np.uint8),
                mask=_crop(plain, b, h, w),
                heat=heat,
                heat_label=note,
                truth=_crop(truth, b, h, w),
                refined=_crop(out.masks[refined], b, h, w) if refined else None,
                name=str(out.batch.ids[b]),
            )
        )
    return rows


def _crop(labels: Tensor | None, b: int, h: int, w: int) -> np.ndarray | None:
    """Image ``b`` of a B x S x S label batch cut to its top-left h x w, or None."""
    return None if labels is None else labels[b, :h, :w].detach().cpu().numpy()


class GridCollector:
    """Gathers grid rows over batches until it holds ``limit`` of them, and draws them.

    Args:
        limit: the most rows (0: collect nothing).
        map_name, refiner: as in :func:`grid_rows`.
        label_names: the K + 1 label names, background first.
        cmap: the map's colormap.
    """

    def __init__(
        self,
        limit: int,
        map_name: str,
        label_names: Sequence[str],
        refiner: str | None = None,
        cmap: str = "jet",
    ) -> None:
        if limit < 0:
            raise ValueError(f"the grid's number of rows must be >= 0, got {limit}")
        self.limit, self.map_name, self.refiner = limit, map_name, refiner
        self.label_names, self.cmap = list(label_names), cmap
        self.rows: list[GridRow] = []

    def add(self, out: SegmentationOutput) -> None:
        """Take rows from this batch's output while there is room."""
        room = self.limit - len(self.rows)
        if room > 0:
            self.rows += grid_rows(out, self.map_name, self.label_names, self.refiner, room)

    def figure(self) -> Figure | None:
        """The grid of the rows gathered (titles: the map and method names), or None."""
        if not self.rows:
            return None
        titles = {"map": f"{self.map_name} map on image", "mask": self.map_name}
        if self.refiner:
            titles["refined"] = str(Method(self.map_name, self.refiner))
        return grid_figure(self.rows, self.label_names, titles, cmap=self.cmap)


def log_figure(logger: Any, tag: str, figure: Figure, step: int) -> bool:
    """Log a figure's pixels to every logger that takes images.

    ``TensorBoardLogger`` gets ``experiment.add_image(tag, pixels, step, dataformats="HWC")``
    (pixels: :func:`~dcsm_lightning.outputs.canvas.figure_rgb`, uint8 H x W x 3); loggers
    without image support (``CSVLogger``, None) are left alone, untouched (their folders are
    not even created).

    Args:
        logger: a logger, a list of loggers (``trainer.loggers``) or None.
        tag: the image's name in the logger.
        figure: a matplotlib ``Figure`` (e.g. :meth:`GridCollector.figure`).
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
    pixels = None
    for one in loggers:
        if isinstance(one, TensorBoardLogger):
            pixels = figure_rgb(figure) if pixels is None else pixels
            one.experiment.add_image(tag, pixels, global_step=step, dataformats="HWC")
    return pixels is not None


def heatmap_overlay(
    image: Any, heat: Any, alpha: float = 0.5, cmap: str = "jet"
) -> np.ndarray:
    """A saliency map's colours blended over its image, from tensors or arrays
    (:func:`~dcsm_lightning.palette.blend_heatmap`).

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
    return blend_heatmap(rgb, heat, alpha, cmap)


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
