"""``glyphs``: a second scene family, unlike the built-in one, to try recipes on.

Five classes with their own shapes AND textures (none shared with the built-in
:data:`~dcsm_lightning.data.scenes.SHAPES`): hexagon/checker, crescent/waves, diamond/hatch,
ellipse/rings, heart/bricks. Objects are small (extent 0.2-0.38 of the side, against
0.34-0.58), 1-5 per image, with finer textures (period 4.5-7 px) over a busier background.
Colours follow the built-in law, so colour says nothing about the class.
"""

from __future__ import annotations

import numpy as np

from dcsm_lightning.data.scenes import Array, Clutter, SceneFamily

#: The classes of :data:`GLYPHS`, in label order.
GLYPH_CLASSES: tuple[str, ...] = ("hexagon", "crescent", "diamond", "ellipse", "heart")

_S3 = np.sqrt(3.0)


# Shapes: (u, v) in radius units -> inside mask (each fits in |u|, |v| <= 1.3).
def _hexagon(u: Array, v: Array) -> Array:
    au, av = np.abs(u), np.abs(v)
    return (av <= _S3 / 2) & (_S3 * au + av <= _S3)


def _crescent(u: Array, v: Array) -> Array:
    return (u * u + v * v <= 1.1) & ((u - 0.5) ** 2 + v * v > 0.6)


def _diamond(u: Array, v: Array) -> Array:
    return np.abs(u) / 1.2 + np.abs(v) / 0.75 <= 1.0


def _ellipse(u: Array, v: Array) -> Array:
    return (u / 1.15) ** 2 + (v / 0.62) ** 2 <= 1.0


def _heart(u: Array, v: Array) -> Array:
    x, y = u, 0.15 - v  # the classic implicit heart, point down
    return (x * x + y * y - 1.0) ** 3 - x * x * y**3 <= 0.0


# Textures: (x, y) pixels, rho radius units, period and phase pixels -> darker-shade weight.
def _checker(x: Array, y: Array, rho: Array, period: float, phase: float) -> Array:
    cells = np.floor((x + phase) * 2 / period) + np.floor((y + phase) * 2 / period)
    return cells % 2 == 0


def _waves(x: Array, y: Array, rho: Array, period: float, phase: float) -> Array:
    wavy = y + 0.35 * period * np.sin(2 * np.pi * x / period)  # stripes bent into waves
    return np.sin(2 * np.pi * wavy / period + phase) > 0


def _hatch(x: Array, y: Array, rho: Array, period: float, phase: float) -> Array:
    return ((x + y) / np.sqrt(2.0) + phase) % period < 0.45 * period  # diagonal bands


def _rings(x: Array, y: Array, rho: Array, period: float, phase: float) -> Array:
    return (np.hypot(x, y) + phase) % period < period / 2  # concentric


def _bricks(x: Array, y: Array, rho: Array, period: float, phase: float) -> Array:
    row = np.floor((y + phase) / period)
    shifted = x + phase + (row % 2) * period  # every other row shifted by half a brick
    return ((y + phase) % period < 0.3 * period) | (shifted % (2 * period) < 0.45 * period)


#: The second family: five small glyphs, 1-5 per image, on a busy background.
GLYPHS = SceneFamily(
    "glyphs",
    GLYPH_CLASSES,
    (
        (_hexagon, _checker),
        (_crescent, _waves),
        (_diamond, _hatch),
        (_ellipse, _rings),
        (_heart, _bricks),
    ),
    object_count_p=(0.2, 0.3, 0.25, 0.15, 0.1),
    extent_range=(0.2, 0.38),
    period_range=(4.5, 7.0),
    clutter=Clutter(noise_std=20.0, noise_grid=8, lines=(2, 7), blobs=(4, 11)),
)
