"""Procedural multi-object scenes: the renderer behind :class:`~.synthetic.SyntheticScenes`.

A scene is a cluttered background (a two-colour gradient, low-frequency colour noise, thin
lines and small blobs) with 1-4 objects drawn on top of each other. Each class is a SHAPE
filled with its own TEXTURE (see :data:`~dcsm_lightning.data.classes.SYNTHETIC_CLASSES`).
An object has one colour drawn from a law shared by all classes; its texture and its 2-pixel
contour are darker shades of that colour, so colour says nothing about the class, while the
contour and a minimum colour distance to what lies beneath give every object a visible edge.
Later objects occlude earlier ones and the mask shows only what is visible; every object keeps
at least half of its area visible. As in PASCAL VOC, a void band (255) about two pixels wide
runs along every object outline.

What changes between scene families (:class:`SceneFamily`: the built-in :data:`SHAPES`, and
:data:`~dcsm_lightning.data.glyphs.GLYPHS`) is the class looks, object sizes and counts, the
texture period and the background clutter; the rendering rules above are shared.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dcsm_lightning.data.classes import SYNTHETIC_CLASSES
from dcsm_lightning.palette import VOID

#: Probabilities of 1, 2, 3, 4 objects per image.
OBJECT_COUNT_P = (0.2, 0.35, 0.3, 0.15)
#: Object extent (2 x radius) as a fraction of the image side.
EXTENT_RANGE = (0.34, 0.58)
MIN_VISIBLE = 0.5  # an earlier object must keep this fraction of its pixels visible
MIN_CONTRAST = 80.0  # RGB distance between an object's mean colour and what lies under it
TEXTURE_SHADE = 0.4  # the texture colour is the object colour times this
OUTLINE_SHADE = 0.2  # the contour colour is the object colour times this
OUTLINE_WIDTH = 2  # contour width in pixels (inside the object)
_PLACEMENT_TRIES = 8
_COLOUR_TRIES = 8
_REACH = 1.3  # every shape fits in a box of half-side _REACH * radius


def _hsv(
    rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]
) -> np.ndarray:
    """One RGB colour (float, 0-255) with uniform hue and saturation / value in the ranges."""
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return np.array(rgb, dtype=np.float32) * 255.0


def object_colour(rng: np.random.Generator) -> np.ndarray:
    """An object or distractor colour (float RGB 0-255); the same law for every class."""
    return _hsv(rng, (0.45, 0.95), (0.45, 0.95))


Array = np.ndarray
Shape = Callable[[Array, Array], Array]


# Shapes: local coordinates (u, v) in units of the object radius -> inside mask.
def _disc(u: Array, v: Array) -> Array:
    return u * u + v * v <= 1.0


def _square(u: Array, v: Array) -> Array:
    return np.maximum(np.abs(u), np.abs(v)) <= 0.82


def _triangle(u: Array, v: Array) -> Array:
    s3 = np.sqrt(3.0)
    return (v >= -0.625) & (s3 * u + v <= 1.25) & (-s3 * u + v <= 1.25)


def _ring(u: Array, v: Array) -> Array:
    rho2 = u * u + v * v
    return (rho2 <= 1.05) & (rho2 >= 0.28)


def _cross(u: Array, v: Array) -> Array:
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.34) & (av <= 1.1)) | ((av <= 0.34) & (au <= 1.1))


def _star(u: Array, v: Array) -> Array:
    phase = (np.arctan2(v, u) * (5 / (2 * np.pi))) % 1.0
    return np.hypot(u, v) <= 0.5 + 0.72 * np.abs(2 * phase - 1) ** 1.5


# Textures: pixel-unit local coordinates (x, y), rho in radius units, a period and a phase in
# pixels -> weight of the darker shade in [0, 1]. Each covers about half of the object, so
# the mean colour of an object does not depend on its class either.
def _stripes(x: Array, y: Array, rho: Array, period: float, phase: float) -> Array:
    return ((x + phase) % period) < period / 2


def _plain(x: Array, y: Array, rho: Array, period: float, phase: float) -> Array:
    return np.full(x.shape, 0.5, dtype=np.float32)  # half-way between the two shades


def _dots(x: Array, y: Array, rho: Array, period: float, phase: float) -> Array:
    dx, dy = (x + phase) % period - period / 2, (y + phase) % period - period / 2
    return dx * dx + dy * dy <= (0.38 * period) ** 2


def _spokes(x: Array, y: Array, rho: Array, period: float, phase: float) -> Array:
    return (np.arctan2(y, x) * (6 / np.pi) + phase) % 2 < 1  # 12 radial sectors


def _grid(x: Array, y: Array, rho: Array, period: float, phase: float) -> Array:
    width = 0.3 * period
    return (((x + phase) % period) < width) | (((y + phase) % period) < width)


def _radial(x: Array, y: Array, rho: Array, period: float, phase: float) -> Array:
    return np.clip(rho / 1.2, 0.0, 1.0)  # darker from the centre outwards


Texture = Callable[[Array, Array, Array, float, float], Array]
#: (shape, texture) of each class, in the order of ``classes.SYNTHETIC_CLASSES``.
CLASS_LOOKS: tuple[tuple[Shape, Texture], ...] = (
    (_disc, _stripes),
    (_square, _plain),
    (_triangle, _dots),
    (_ring, _spokes),
    (_cross, _grid),
    (_star, _radial),
)


@dataclass(frozen=True)
class Clutter:
    """Background clutter: colour-noise strength and grid, counts of thin lines and blobs."""

    noise_std: float = 12.0  # std of the low-frequency colour noise (0-255 units)
    noise_grid: int = 5  # the noise is a noise_grid x noise_grid grid interpolated bilinearly
    lines: tuple[int, int] = (0, 4)  # [low, high) number of thin lines
    blobs: tuple[int, int] = (2, 6)  # [low, high) number of small blobs
    blob_radius: tuple[float, float] = (1.5, 3.5)


def _background(rng: np.random.Generator, size: int, clutter: Clutter) -> np.ndarray:
    """Cluttered background, float H x W x 3 (0-255)."""
    low, high = (_hsv(rng, (0.05, 0.35), (0.35, 0.9)) for _ in range(2))
    angle = rng.uniform(0, 2 * np.pi)
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    ramp = np.cos(angle) * axis[None, :] + np.sin(angle) * axis[:, None]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    canvas = low + (high - low) * ramp[..., None]
    # low-frequency colour noise: a 5 x 5 grid interpolated bilinearly
    grid = clutter.noise_grid
    coarse = rng.normal(0.0, clutter.noise_std, (grid, grid, 3)).astype(np.float32)
    nodes = np.linspace(0, grid - 1, size)[:, None] - np.arange(grid)
    weights = np.clip(1 - np.abs(nodes), 0, 1).astype(np.float32)
    rows = np.tensordot(weights, coarse, axes=(1, 0))  # S x grid x 3
    canvas += np.tensordot(weights, rows, axes=(1, 1)).transpose(1, 0, 2)
    yy, xx = np.ogrid[0:size, 0:size]
    for _ in range(rng.integers(*clutter.lines)):  # thin lines
        x0, y0 = rng.uniform(0, size, 2)
        angle, length = rng.uniform(0, np.pi), rng.uniform(0.3, 1.0) * size
        steps = np.linspace(0.0, length, int(2 * length) + 2)
        px = np.round(x0 + steps * np.cos(angle)).astype(int)
        py = np.round(y0 + steps * np.sin(angle)).astype(int)
        keep = (px >= 0) & (px < size) & (py >= 0) & (py < size)
        canvas[py[keep], px[keep]] = object_colour(rng)
    for _ in range(rng.integers(*clutter.blobs)):  # small blobs
        cx, cy = rng.uniform(0, size, 2)
        radius = rng.uniform(*clutter.blob_radius)
        y0, y1 = max(int(cy - radius), 0), min(int(cy + radius) + 2, size)
        x0, x1 = max(int(cx - radius), 0), min(int(cx + radius) + 2, size)
        blob = (yy[y0:y1] - cy) ** 2 + (xx[:, x0:x1] - cx) ** 2 <= radius**2
        canvas[y0:y1, x0:x1][blob] = object_colour(rng)
    return canvas


@dataclass(frozen=True)
class SceneFamily:
    """What a family of scenes draws: its classes, their looks, object sizes and counts.

    Args:
        name: the family's name (``SyntheticDataModule(family=...)``).
        class_names: the K class names; class k is drawn with ``looks[k]``.
        looks: (shape, texture) per class. A shape maps local coordinates (u, v) in units of
            the object radius to an inside mask and fits in ``|u|, |v| <= 1.3``; a texture maps
            pixel-unit local coordinates (x, y), rho (radius units), a period and a phase (pixels)
            to the weight of the darker shade in [0, 1], covering about half of the object.
        object_count_p: probabilities of 1, 2, ... objects per image.
        extent_range: object extent (2 x radius) as a fraction of the image side.
        period_range: texture period in pixels.
        clutter: the background's clutter.
    """

    name: str
    class_names: tuple[str, ...]
    looks: tuple[tuple[Shape, Texture], ...]
    object_count_p: tuple[float, ...]
    extent_range: tuple[float, float]
    period_range: tuple[float, float]
    clutter: Clutter = Clutter()


#: The built-in family: six large shapes (extent 0.34-0.58 of the side), 1-4 per image.
SHAPES = SceneFamily(
    "shapes", SYNTHETIC_CLASSES, CLASS_LOOKS, OBJECT_COUNT_P, EXTENT_RANGE, (7.0, 10.0)
)


def _erode(region: np.ndarray, steps: int) -> np.ndarray:
    """Erode a boolean mask ``steps`` times with the 4-neighbourhood.

    Pixels beyond the array count as equal to the edge: an object cut by the image border
    gets no contour along that border.
    """
    out = region.copy()
    for _ in range(steps):
        inner = out.copy()
        inner[1:] &= out[:-1]
        inner[:-1] &= out[1:]
        inner[:, 1:] &= out[:, :-1]
        inner[:, :-1] &= out[:, 1:]
        out = inner
    return out


def _outline(instances: np.ndarray) -> np.ndarray:
    """Pixels with an 8-neighbour of another instance (a band ~2 px wide along each edge)."""
    padded = np.pad(instances, 1, mode="edge")
    height, width = instances.shape
    band = np.zeros(instances.shape, dtype=bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy != 1 or dx != 1:
                band |= padded[dy : dy + height, dx : dx + width] != instances
    return band


def render_scene(
    rng: np.random.Generator, size: int = 96, family: SceneFamily = SHAPES
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one scene of ``family`` with the random stream ``rng``.

    Args:
        rng: the generator that decides everything (same state -> same scene).
        size: the image side S in pixels (>= 32).
        family: what to draw (default the built-in :data:`SHAPES`).

    Returns:
        ``(rgb, mask)``: uint8 S x S x 3 and int64 S x S with 0 = background, class k -> k + 1
        (k indexes ``family.class_names``), 255 = void.
    """
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size}")
    canvas = _background(rng, size, family.clutter)
    instances = np.zeros((size, size), dtype=np.int16)
    classes: list[int] = []
    visible = np.zeros(0, dtype=np.int64)  # visible pixels of each object drawn so far
    areas = np.zeros(0, dtype=np.int64)
    count = rng.choice(len(family.object_count_p), p=family.object_count_p) + 1
    axis = np.arange(size, dtype=np.float32)
    for cls in rng.integers(0, len(family.looks), count):
        shape, texture = family.looks[cls]
        for _ in range(_PLACEMENT_TRIES):
            radius = rng.uniform(*family.extent_range) * size / 2
            cx, cy = rng.uniform(0.65 * radius, size - 0.65 * radius, 2)
            angle = rng.uniform(0, 2 * np.pi)
            reach = _REACH * radius
            y0, y1 = max(int(cy - reach), 0), min(int(np.ceil(cy + reach)) + 1, size)
            x0, x1 = max(int(cx - reach), 0), min(int(np.ceil(cx + reach)) + 1, size)
            dx, dy = axis[None, x0:x1] - cx, axis[y0:y1, None] - cy
            x = np.cos(angle) * dx + np.sin(angle) * dy  # pixel units, object frame
            y = -np.sin(angle) * dx + np.cos(angle) * dy
            inside = shape(x / radius, y / radius)
            if inside.sum() < 0.1 * radius * radius:
                continue
            covered = np.bincount(instances[y0:y1, x0:x1][inside], minlength=len(areas) + 1)[1:]
            if np.all(visible - covered >= MIN_VISIBLE * areas):
                break
        else:
            continue  # no placement keeps the others visible: drop this object
        period, phase = rng.uniform(*family.period_range), rng.uniform(0.0, 10.0)
        weight = texture(x, y, np.hypot(x, y) / radius, period, phase).astype(np.float32)
        backdrop = canvas[y0:y1, x0:x1][inside].mean(axis=0)
        mix = float(weight[inside].mean())
        best, best_gap = None, -1.0
        for _ in range(_COLOUR_TRIES):  # keep a visible colour edge to what lies beneath
            base = object_colour(rng)
            second = base * TEXTURE_SHADE
            mean = base + (second - base) * mix
            gap = float(np.linalg.norm(mean - backdrop))
            if gap > best_gap:
                best, best_gap = (base, second), gap
            if gap >= MIN_CONTRAST:
                break
        base, second = best
        shade = 1.0 + 0.12 * (x / reach)[..., None]  # a little directional lighting
        fill = (base + (second - base) * weight[..., None]) * shade
        edge = inside & ~_erode(inside, OUTLINE_WIDTH)
        fill[edge] = base * OUTLINE_SHADE  # a dark contour, as in clip art
        canvas[y0:y1, x0:x1][inside] = fill[inside]
        instances[y0:y1, x0:x1][inside] = len(areas) + 1
        classes.append(int(cls))
        area = int(inside.sum())
        visible = np.append(visible - covered, area)
        areas = np.append(areas, area)
    canvas += rng.standard_normal(canvas.shape, dtype=np.float32) * 4.0
    rgb = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    lookup = np.array([0, *[c + 1 for c in classes]], dtype=np.int64)
    mask = lookup[instances]
    mask[_outline(instances)] = VOID
    return rgb, mask
