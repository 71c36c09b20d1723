"""The labelled per-image grid, the standard weak-supervision figure.

One row per image; columns image | ground truth | map on image | mask | + refined mask (the
ground truth and refined columns only when some row has them), column titles, the image id
left of each row, the class of the map shown in its corner, a colour bar of the map and a
legend of the labels present. Data in, ``Figure`` out: :class:`GridRow` holds numpy arrays,
so anyone can draw their own rows; ``segmentation.panels.grid_rows`` makes them from a
batch's :class:`~dcsm_lightning.SegmentationOutput`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dcsm_lightning.outputs.canvas import new_figure
from dcsm_lightning.palette import (
    VOC_PALETTE,
    VOID,
    blend_heatmap,
    check_label_map,
    colorize_labels,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["COLUMNS", "GridRow", "grid_columns", "grid_figure", "label_name", "legend_labels"]

#: every column in order, with its default title.
COLUMNS = {
    "image": "image",
    "truth": "ground truth",
    "map": "map on image",
    "mask": "mask",
    "refined": "+ CRF",
}
_NOTE_BOX = {"facecolor": "black", "alpha": 0.6, "pad": 1.5, "linewidth": 0}


@dataclass(frozen=True)
class GridRow:
    """One image's row (all arrays H x W, the image's own size).

    Attributes:
        image: uint8 H x W x 3 RGB.
        mask: int H x W label map in [0, 255] (0 background, class k -> k + 1, 255 void).
        heat: float H x W in [0, 1], the map shown on the image (one class's), or None.
        heat_label: what the map shows (e.g. ``"circle 0.97"``), written in its corner; with
            ``heat`` None, the reason there is no map (e.g. ``"no candidate"``).
        truth: the ground-truth label map, or None.
        refined: the refined (e.g. dense CRF) label map, or None.
        name: the image id, written left of the row.

    Raises:
        ValueError: an array whose shape or range is not the above.
    """

    image: np.ndarray
    mask: np.ndarray
    heat: np.ndarray | None = None
    heat_label: str = ""
    truth: np.ndarray | None = None
    refined: np.ndarray | None = None
    name: str = ""

    def __post_init__(self) -> None:
        image = np.asarray(self.image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 H x W x 3, got {image.dtype} {image.shape}")
        size = image.shape[:2]
        for field in ("mask", "truth", "refined"):
            labels = getattr(self, field)
            if labels is not None and check_label_map(labels).shape != size:
                raise ValueError(f"{field} must be {size} (the image's), got {labels.shape}")
        if self.heat is not None and np.shape(self.heat) != size:
            raise ValueError(f"heat must be {size} (the image's), got {np.shape(self.heat)}")


def grid_columns(rows: Sequence[GridRow]) -> list[str]:
    """The columns ``rows`` fill, in :data:`COLUMNS` order: ``truth`` when a row has ground
    truth, ``map`` when a row has a map (or says why not), ``refined`` when a row has one."""
    present = {
        "image": True,
        "truth": any(r.truth is not None for r in rows),
        "map": any(r.heat is not None or r.heat_label for r in rows),
        "mask": True,
        "refined": any(r.refined is not None for r in rows),
    }
    return [column for column in COLUMNS if present[column]]


def legend_labels(rows: Sequence[GridRow]) -> list[int]:
    """The label ids drawn anywhere in ``rows`` (ground truth, masks, refined masks), sorted:
    exactly the legend's entries."""
    found: set[int] = set()
    for row in rows:
        for labels in (row.truth, row.mask, row.refined):
            if labels is not None:
                found.update(int(v) for v in np.unique(np.asarray(labels)))
    return sorted(found)


def label_name(label: int, label_names: Sequence[str]) -> str:
    """A label id's name: ``label_names[label]`` (background first), ``"void"`` for 255,
    ``"label <id>"`` beyond the names."""
    if label == VOID:
        return "void"
    return str(label_names[label]) if 0 <= label < len(label_names) else f"label {label}"


def _cell(row: GridRow, column: str, cmap: str, alpha: float) -> tuple[np.ndarray | None, str]:
    """The picture of one cell (None: an empty cell) and the note in its corner."""
    if column == "image":
        return np.asarray(row.image), ""
    if column == "map":
        if row.heat is None:  # dimmed image: there is no map to show
            return (np.asarray(row.image) // 3 + 85).astype(np.uint8), row.heat_label
        return blend_heatmap(row.image, row.heat, alpha, cmap), row.heat_label
    labels = {"truth": row.truth, "mask": row.mask, "refined": row.refined}[column]
    if labels is None:
        return None, {"truth": "no ground truth", "refined": "not refined"}.get(column, "")
    return colorize_labels(labels), ""


def grid_figure(
    rows: Sequence[GridRow],
    label_names: Sequence[str],
    titles: Mapping[str, str] | None = None,
    cmap: str = "jet",
    alpha: float = 0.5,
    tile_inches: float = 2.0,
    dpi: int = 100,
) -> Figure:
    """Draw ``rows`` as the labelled grid (see the module docstring).

    Label maps are drawn in VOC colours (background black, void cream), the map blended over
    its image (``alpha``). A cell a row lacks (no ground truth in a column others have) says so.

    Args:
        rows: the images, top to bottom (at least one).
        label_names: the K + 1 label names, background first (the legend's names).
        titles: column -> title, overriding :data:`COLUMNS`' (e.g. ``{"mask": "dcsm",
            "refined": "dcsm+crf"}``).
        cmap: the map's matplotlib colormap.
        alpha: the map's opacity over the image, in [0, 1].
        tile_inches: the size of one cell.
        dpi: pixels per inch (a cell is ``tile_inches * dpi`` pixels wide).

    Raises:
        ValueError: no rows, or an unknown column in ``titles``.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch

    if not rows:
        raise ValueError("grid_figure needs at least one row")
    unknown = set(titles or {}) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown grid columns {sorted(unknown)}; columns: {list(COLUMNS)}")
    titles = {**COLUMNS, **(titles or {})}
    columns = grid_columns(rows)
    labels = legend_labels(rows)
    legend_lines = math.ceil(len(labels) / max(1, int(len(columns) * tile_inches / 1.4)))
    per_line = math.ceil(len(labels) / max(legend_lines, 1))  # balanced lines
    figure = new_figure(
        len(columns) * tile_inches + 0.4,
        len(rows) * tile_inches + 0.4 + 0.25 * legend_lines + (0.5 if "map" in columns else 0),
        dpi=dpi,
        constrained=True,
    )
    axes = figure.subplots(len(rows), len(columns), squeeze=False)
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            picture, note = _cell(row, column, cmap, alpha)
            if picture is None:
                ax.set_facecolor("0.92")
                ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes,
                        fontsize="small", color="0.4")  # fmt: skip
            else:
                nearest = column in ("truth", "mask", "refined")
                ax.imshow(picture, interpolation="nearest" if nearest else "antialiased")
                if note:
                    ax.text(0.03, 0.97, note, ha="left", va="top", transform=ax.transAxes,
                            fontsize="small", color="white", bbox=_NOTE_BOX)  # fmt: skip
            if r == 0:
                ax.set_title(titles[column], fontsize="medium")
        axes[r, 0].set_ylabel(row.name, fontsize="small")
    if "map" in columns:
        # below the whole grid (taking height from every column keeps the rows aligned),
        # one column wide
        figure.colorbar(
            ScalarMappable(Normalize(0.0, 1.0), cmap), ax=axes.ravel().tolist(),
            orientation="horizontal", location="bottom", shrink=0.9 / len(columns), aspect=15,
            fraction=0.35 / (len(rows) * tile_inches + 0.7), label="map value",
        )  # fmt: skip
    # matplotlib fills a legend column by column: order the entries so lines read in id order
    order = [
        line * per_line + col
        for col in range(per_line)
        for line in range(legend_lines)
        if line * per_line + col < len(labels)
    ]
    handles = [
        Patch(facecolor=VOC_PALETTE[k] / 255.0, edgecolor="0.3", label=label_name(k, label_names))
        for k in (labels[i] for i in order)
    ]
    figure.legend(
        handles=handles, loc="outside lower center", ncol=max(per_line, 1), fontsize="small",
        frameon=False,
    )  # fmt: skip
    return figure
