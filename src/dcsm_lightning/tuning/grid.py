"""The search grid of ``dcsm-lightning tune``: which knobs, which values, in which groups.

The grid was written down before any validation result of the two generated datasets was
looked at, and is not changed to suit them (docs/tuning.md). A setting is one value per knob;
the search (:mod:`dcsm_lightning.tuning.search`) starts from the configured values and moves
one *group* of knobs at a time (knobs known to interact, such as the tanh gain ``alpha`` and the
CRF's bilateral weight, form one group and are searched jointly).

Knobs act on one of three things:

- ``strategy``: an init argument of the strategy (``alpha``, ``layers``, ``scales``);
- ``candidates``: ``min_candidates`` N, the candidate top-up (a setting of the segmentation,
  shared by every strategy, so tuned for the first strategy only);
- ``crf``: a field of :class:`~dcsm_lightning.crf.CRFSettings` (shared, first strategy only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from dcsm_lightning.crf import CRFSettings
from dcsm_lightning.saliency import (
    CaptumAttribution,
    Distinct,
    GradCAM,
    LayerGradient,
    SaliencyStrategy,
    Simonyan,
)
from dcsm_lightning.saliency.options import strategy_options

__all__ = ["BUDGET_KNOBS", "CRF_KNOBS", "Grid", "Knob", "Setting", "default_grid", "layer_groups"]

Target = Literal["strategy", "candidates", "crf"]
#: The CRF fields a grid may search.
CRF_KNOBS = tuple(f.name for f in fields(CRFSettings))
#: Knobs never grown above their largest value (:attr:`Knob.grows_up`).
BUDGET_KNOBS = ("iterations",)

#: Values of the default grid (fixed before looking at validation results; docs/tuning.md).
ALPHAS = (1.0, 2.0, 3.0, 4.0, 6.0)
SIMONYAN_ALPHAS = (2.0, 4.0, 8.0, 16.0)
#: ``None`` keeps the plain division by the max (the configured IG); the others add a tanh.
ATTRIBUTION_ALPHAS = (None, 3.0, 10.0, 30.0, 100.0)
DISTINCT_ALPHAS = (None, 1.0, 3.0, 10.0, 30.0)
SCALES = ((1.0,), (0.8, 1.0, 1.2), (1.0, 1.25, 1.5))
MIN_CANDIDATES = (1, 2, 3, 4)
BILATERAL_WEIGHTS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
BILATERAL_SXY = (10.0, 30.0, 60.0)
BILATERAL_SRGB = (5.0, 10.0, 20.0, 40.0)
ITERATIONS = (5, 10, 20)


@dataclass(frozen=True)
class Knob:
    """One searched value: ``name`` of an init argument / ``min_candidates`` / a CRF field.

    Args:
        name: the argument or field name.
        values: the grid's values, in order (the edges are the first and the last).
        target: ``"strategy"``, ``"candidates"`` or ``"crf"``.
        grows_up: whether :func:`extended` may add a value above the largest (False for a
            budget such as the CRF's ``iterations``: more of it costs time linearly and only
            takes mean-field inference further towards its fixed point).
    """

    name: str
    values: tuple[Any, ...]
    target: Target
    grows_up: bool = True


Setting = tuple[tuple[str, Any], ...]  # sorted (knob name, value) pairs, hashable


@dataclass(frozen=True)
class Grid:
    """The knobs of one strategy's search and how they are grouped.

    Args:
        knobs: every searched knob (names unique).
        groups: tuples of knob names searched jointly, in search order; every knob in one.
    """

    knobs: tuple[Knob, ...]
    groups: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        names = [k.name for k in self.knobs]
        grouped = [n for group in self.groups for n in group]
        if len(set(names)) != len(names) or sorted(grouped) != sorted(names):
            raise ValueError(f"every knob in exactly one group: knobs {names}, groups {grouped}")

    def knob(self, name: str) -> Knob:
        return next(k for k in self.knobs if k.name == name)

    def split(self, setting: Mapping[str, Any]) -> dict[Target, dict[str, Any]]:
        """A setting's values by what they act on: ``{"strategy": {...}, "candidates": {...},
        "crf": {...}}``."""
        parts: dict[Target, dict[str, Any]] = {"strategy": {}, "candidates": {}, "crf": {}}
        for name, value in setting.items():
            parts[self.knob(name).target][name] = value
        return parts

    def size(self) -> int:
        """The number of settings of the full product (what an exhaustive search evaluates)."""
        total = 1
        for knob in self.knobs:
            total *= len(knob.values)
        return total

    def edges(self, setting: Mapping[str, Any]) -> list[str]:
        """The knobs whose chosen value is the first or last of more than two grid values
        (numbers only: a choice such as ``layers`` has no edge)."""
        found = []
        for knob in self.knobs:
            numeric = [v for v in knob.values if isinstance(v, (int, float))]
            if len(numeric) < 3 or len(numeric) != len(knob.values):
                continue
            if setting[knob.name] in (min(numeric), max(numeric)):
                found.append(knob.name)
        return found


def as_setting(values: Mapping[str, Any]) -> Setting:
    """A hashable setting from ``{knob: value}`` (lists become tuples)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in values.items()))


def layer_groups(layers: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """Layer sets to try from a configured list: all of it, each block alone, neighbouring
    pairs of blocks. A block is the name up to its last ``_`` (``conv4_2`` -> ``conv4``).

    >>> [len(g) for g in layer_groups(["a_1", "a_2", "b_1", "c_1"])]
    [4, 2, 1, 1, 3, 2]
    """
    blocks: dict[str, list[str]] = {}
    for name in layers:
        blocks.setdefault(name.rpartition("_")[0] or name, []).append(name)
    parts = [tuple(v) for v in blocks.values()]
    options = [tuple(layers), *parts]
    options += [parts[i] + parts[i + 1] for i in range(len(parts) - 1)]
    return tuple(dict.fromkeys(options))


def _with_current(values: Sequence[Any], current: Any) -> tuple[Any, ...]:
    """The grid's values plus the configured one (so the start is always a grid point)."""
    current = tuple(current) if isinstance(current, list) else current
    if current in values:
        return tuple(values)
    numeric = all(isinstance(v, (int, float)) for v in (*values, current) if v is not None)
    merged = [*values, current]
    if numeric and None not in merged:
        merged.sort()
    return tuple(merged)


def _strategy_knobs(strategy: SaliencyStrategy) -> list[tuple[str, tuple[Any, ...]]]:
    """The strategy's own knobs in the default grid, by its class."""
    if isinstance(strategy, LayerGradient):
        return [("alpha", ALPHAS), ("layers", layer_groups(strategy.layers)), ("scales", SCALES)]
    if isinstance(strategy, Simonyan):
        return [("alpha", SIMONYAN_ALPHAS), ("scales", SCALES)]
    if isinstance(strategy, CaptumAttribution):
        return [("alpha", ATTRIBUTION_ALPHAS)]
    if isinstance(strategy, Distinct):
        return [("alpha", DISTINCT_ALPHAS)]
    if isinstance(strategy, GradCAM):
        return [("scales", SCALES)]
    return []


def default_grid(
    strategy: SaliencyStrategy,
    min_candidates: int | None,
    crf: CRFSettings | None,
    values: Mapping[str, Sequence[Any]] | None = None,
) -> Grid:
    """The default grid of ``strategy``: its own knobs, and, when ``min_candidates`` / ``crf``
    are given (the first strategy), N and the CRF's. ``values`` replaces the default values
    of the knobs it names; the configured value is added to every knob (the search's start).

    Groups: ``(alpha, bilateral_compat)`` jointly (the gain and the CRF weight trade off),
    then ``layers``, ``scales``, ``min_candidates``, ``(bilateral_sxy, bilateral_srgb)``,
    ``iterations``; a strategy without ``alpha`` searches ``bilateral_compat`` alone.
    The knobs of :data:`BUDGET_KNOBS` (``iterations``) do not grow above their largest value.
    """
    current = strategy_options(strategy)
    specs: list[tuple[str, Sequence[Any], Target, Any]] = [
        (name, grid_values, "strategy", current[name])
        for name, grid_values in _strategy_knobs(strategy)
    ]
    if min_candidates is not None:
        specs.append(("min_candidates", MIN_CANDIDATES, "candidates", min_candidates))
    if crf is not None:
        for name, grid_values in (
            ("bilateral_compat", BILATERAL_WEIGHTS),
            ("bilateral_sxy", BILATERAL_SXY),
            ("bilateral_srgb", BILATERAL_SRGB),
            ("iterations", ITERATIONS),
        ):
            specs.append((name, grid_values, "crf", getattr(crf, name)))
    given = dict(values or {})
    knobs = [
        Knob(name, _with_current(given.get(name, grid_values), now), target)
        for name, grid_values, target, now in specs
    ]
    knobs = [replace(k, grows_up=False) if k.name in BUDGET_KNOBS else k for k in knobs]
    names = {k.name for k in knobs}
    order = [
        ("alpha", "bilateral_compat"),
        ("layers",),
        ("scales",),
        ("min_candidates",),
        ("bilateral_sxy", "bilateral_srgb"),
        ("iterations",),
    ]
    groups = [tuple(n for n in group if n in names) for group in order]
    return Grid(tuple(knobs), tuple(g for g in groups if g))


def start_setting(
    grid: Grid, strategy: SaliencyStrategy, min_candidates: int, crf: CRFSettings
) -> Setting:
    """The configured values of the grid's knobs (where the search starts: "default")."""
    options = strategy_options(strategy)
    values: dict[str, Any] = {}
    for knob in grid.knobs:
        if knob.target == "strategy":
            values[knob.name] = options[knob.name]
        elif knob.target == "candidates":
            values[knob.name] = min_candidates
        else:
            values[knob.name] = getattr(crf, knob.name)
    return as_setting(values)


def fixed(grid: Grid, values: Mapping[str, Any]) -> Grid:
    """``grid`` with the knobs in ``values`` held at that single value."""
    knobs = tuple(
        replace(k, values=(values[k.name],)) if k.name in values else k for k in grid.knobs
    )
    return Grid(knobs, grid.groups)


def extended(grid: Grid, setting: Mapping[str, Any]) -> tuple[Grid, list[str]]:
    """``grid`` with one more value beyond each edge the setting sits on (:meth:`Grid.edges`):
    the last step repeated (geometric for floats: 16 after 4, 8; integers by their step, not
    below 0; never above the largest value of a knob that does not grow up). Returns the new
    grid and the knobs extended."""
    knobs, grown = [], []
    for knob in grid.knobs:
        values = sorted(knob.values) if knob.name in grid.edges(setting) else None
        if values is None:
            knobs.append(knob)
            continue
        low = setting[knob.name] == values[0]
        if not (low or knob.grows_up):
            knobs.append(knob)
            continue
        a, b = (values[1], values[0]) if low else (values[-2], values[-1])
        if isinstance(b, int) and not isinstance(b, bool):
            new: Any = b + (b - a)
        else:
            new = b * (b / a) if a > 0 else b + (b - a)
        if new < 0 or new == b:
            knobs.append(knob)
            continue
        knobs.append(replace(knob, values=tuple(sorted((*knob.values, new)))))
        grown.append(knob.name)
    return Grid(tuple(knobs), grid.groups), grown
