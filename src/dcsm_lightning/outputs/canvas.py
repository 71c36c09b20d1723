"""Matplotlib figures without pyplot: a new Agg-backed ``Figure``, its PNG bytes (in memory
or in a file), its pixels.

No global pyplot state is touched, so drawing works in threads, in DDP workers and with any
backend the user selected.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dcsm_lightning.files import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["figure_png", "figure_rgb", "new_figure", "save_figure_png"]


def new_figure(width: float, height: float, dpi: int = 100, constrained: bool = False) -> Figure:
    """An empty ``Figure`` of ``width`` x ``height`` inches on its own Agg canvas.

    Args:
        width, height: size in inches (> 0).
        dpi: pixels per inch.
        constrained: use matplotlib's constrained layout (titles, legends and colour bars
            placed without overlaps); otherwise call ``tight_layout`` yourself.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(
        figsize=(width, height), dpi=dpi, layout="constrained" if constrained else None
    )
    FigureCanvasAgg(figure)
    return figure


def figure_png(figure: Figure) -> bytes:
    """The figure as PNG bytes (at its own dpi)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def figure_rgb(figure: Figure) -> np.ndarray:
    """The figure's pixels: uint8 H x W x 3 RGB (H, W = inches x dpi), e.g. for a logger's
    ``add_image``."""
    figure.canvas.draw()
    return np.ascontiguousarray(np.asarray(figure.canvas.buffer_rgba())[..., :3])


def save_figure_png(path: str | os.PathLike, figure: Figure, overwrite: bool = False) -> Path:
    """Write the figure as a PNG, atomically (:func:`~dcsm_lightning.files.atomic_path`).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(figure_png(figure))
    return Path(path)
