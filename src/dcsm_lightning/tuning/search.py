"""Score settings on the tuning images and search the grid for the best.

:class:`Evaluator` turns a setting into per-image confusion counts of its masks without and
with the dense CRF. A setting's maps are made once (by the map source) and kept while the
settings that differ only in CRF knobs are scored; masks come from the library's flow,
:func:`~dcsm_lightning.segmentation.flow.segment_batch`, with one
:class:`~dcsm_lightning.crf.DenseCRF` refiner whose worker pool runs every CRF variant.
Every result is cached per image, so a search on any subset of the images (a
cross-validation fold, a smaller draw) re-scores what was computed without running anything.

Two searches over a :class:`~dcsm_lightning.tuning.grid.Grid`:

- :func:`coordinate_search` (the default): from the configured setting, each group of knobs
  in turn is set to its best combination of values with the others held; rounds repeat
  until one changes nothing (at most ``max_rounds``, default 2). A value moves only on a
  strict gain, so the result is the best of every setting scored.
- :func:`exhaustive_search`: every setting of the product (small grids, tests).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from dcsm_lightning.crf import CRFSettings, DenseCRF
from dcsm_lightning.metrics import iou_from_confusion, segmentation_confusion
from dcsm_lightning.segmentation.flow import segment_batch
from dcsm_lightning.segmentation.methods import Method
from dcsm_lightning.tuning.grid import Grid, Setting, as_setting
from dcsm_lightning.tuning.maps import StrategyMaps

__all__ = ["Evaluation", "Evaluator", "SearchResult", "coordinate_search", "exhaustive_search"]

Score = Callable[[Setting], float]
Prefetch = Callable[[Sequence[Setting]], None]
#: How many settings' maps an :class:`Evaluator` keeps (each B x K x S x S per image).
MAPS_KEPT = 6
#: Settings an :class:`Evaluator` scores at once (:meth:`Evaluator.prefetch`).
SEARCH_THREADS = 2


@dataclass(frozen=True)
class Evaluation:
    """Per-image confusion counts int64 (n, L + 1, L + 1) of one setting's masks (L labels,
    background included; :func:`~dcsm_lightning.metrics.segmentation_confusion`)."""

    plain: Tensor
    crf: Tensor

    def miou(self, indices: Sequence[int] | None = None, crf: bool = True) -> float:
        """mIoU in [0, 1] over the images ``indices`` (all when None), with or without CRF."""
        counts = self.crf if crf else self.plain
        if indices is not None:
            counts = counts[list(indices)]
        return float(iou_from_confusion(counts.sum(0)))


class Evaluator:
    """A setting -> :class:`Evaluation` on the tuning images, each setting computed once.

    :meth:`prefetch` scores several settings at once on ``threads`` threads: one composes
    a setting's maps (the map source runs one setting at a time) while another waits for its
    CRF variants in the worker pool.

    Args:
        grid: the grid (to split a setting into strategy / N / CRF values).
        source: the strategy's map source (its images are scored).
        crf: the CRF settings the grid's CRF knobs change (the others stay).
        num_labels: L, background included (K + 1).
        refiner: the ``DenseCRF`` whose worker pool runs every CRF variant (each call gets the
            variant's settings; the refiner's own are not changed).
        top_up: N when the grid does not search ``min_candidates``.
        progress: called with a line per computed setting.
        threads: settings scored at once by :meth:`prefetch`.
    """

    def __init__(
        self,
        grid: Grid,
        source: StrategyMaps,
        crf: CRFSettings,
        num_labels: int,
        refiner: DenseCRF,
        top_up: int = 3,
        progress: Callable[[str], None] | None = None,
        threads: int = SEARCH_THREADS,
    ) -> None:
        self.grid, self.source, self.crf, self.num_labels = grid, source, crf, num_labels
        self.refiner, self.top_up, self.progress = refiner, top_up, progress
        self.threads = threads
        self.cache: dict[Setting, Evaluation] = {}
        #: (strategy options, N) -> maps and candidates per batch, the most recently used last
        self._maps: OrderedDict[Any, list[tuple[Tensor, Tensor]]] = OrderedDict()
        self._maps_lock = threading.Lock()

    def crf_settings(self, setting: Setting) -> CRFSettings:
        """The CRF of ``setting``: :attr:`crf` with the setting's CRF knobs."""
        changes = self.grid.split(dict(setting))["crf"]
        return CRFSettings(**{**asdict(self.crf), **changes})

    def __call__(self, setting: Setting) -> Evaluation:
        if setting not in self.cache:
            self.prefetch([setting])
        return self.cache[setting]

    def prefetch(self, settings: Sequence[Setting]) -> None:
        """Score the settings not scored yet, :attr:`threads` at a time (torch ops of this
        process on one thread each meanwhile, so the CRF workers keep the other cores), and
        log each as it is done, in order."""
        todo = [s for s in dict.fromkeys(settings) if s not in self.cache]
        if len(todo) <= 1 or self.threads <= 1:
            for setting in todo:
                self._store(setting, *self._evaluate(setting))
            return
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(min(self.threads, len(todo))) as pool:
                for setting, done in zip(todo, pool.map(self._evaluate, todo), strict=True):
                    self._store(setting, *done)
        finally:
            torch.set_num_threads(before)

    def _store(self, setting: Setting, result: Evaluation, seconds: float) -> None:
        self.cache[setting] = result
        self.log(
            f"    {_describe(setting)}: mIoU {100 * result.miou(crf=False):.1f}, "
            f"+ CRF {100 * result.miou():.1f} ({seconds:.1f} s)"
        )

    def log(self, line: str) -> None:
        """Pass ``line`` to ``progress`` (if any)."""
        if self.progress is not None:
            self.progress(line)

    def _evaluate(self, setting: Setting) -> tuple[Evaluation, float]:
        """One setting's evaluation and the seconds it took (safe in several threads)."""
        start = time.perf_counter()
        parts = self.grid.split(dict(setting))
        top_up = parts["candidates"].get("min_candidates", self.top_up)
        per_batch = self._setting_maps(as_setting(parts["strategy"]), top_up)
        refiner = _Variant(self.refiner, self.crf_settings(setting))
        method = Method(self.source.strategy.name)
        plain, refined = [], []
        for index, (maps, candidates) in enumerate(per_batch):
            batch = self.source.images.batches[index]
            given = _Given(method.strategy, self.source.images.probs[index], candidates, maps)
            out = segment_batch(None, batch, given, [refiner], stage="validate")  # type: ignore[arg-type]
            plain.append(out.masks[method])
            refined.append(out.masks[method.refined(refiner.name)])
        result = Evaluation(self._confusions(plain), self._confusions(refined))
        return result, time.perf_counter() - start

    def _setting_maps(self, options: Setting, top_up: int) -> list[tuple[Tensor, Tensor]]:
        """The maps of strategy ``options`` and N, made once and kept for the next CRF
        variants (one setting at a time: a source may hook the model)."""
        key = (options, top_up)
        with self._maps_lock:
            if key not in self._maps:
                self._maps[key] = self.source.maps(dict(options), top_up)
                while len(self._maps) > MAPS_KEPT:
                    self._maps.popitem(last=False)
            self._maps.move_to_end(key)
            return self._maps[key]

    def _confusions(self, masks: list[Tensor]) -> Tensor:
        counts = [
            segmentation_confusion(pred.cpu(), target, self.num_labels)
            for batch_masks, batch in zip(masks, self.source.images.batches, strict=True)
            for pred, target in zip(batch_masks, batch.mask, strict=True)  # type: ignore[arg-type]
        ]
        return torch.stack(counts)


class _Variant:
    """``refiner`` with one CRF variant's settings: threads share the refiner and its pool."""

    def __init__(self, refiner: DenseCRF, settings: CRFSettings) -> None:
        self.refiner, self.settings, self.name = refiner, settings, refiner.name

    def refine(self, trainer: Any, stage: str, batch: Any, probs: Any) -> Tensor | None:
        return self.refiner.refine(trainer, stage, batch, probs, self.settings)


class _Given:
    """A :class:`~dcsm_lightning.segmentation.flow.MapSource` of maps made earlier: the flow
    (:func:`~dcsm_lightning.segmentation.flow.segment_batch`) takes them from here."""

    def __init__(self, name: str, probs: Tensor, candidates: Tensor, maps: Tensor) -> None:
        self.names = [name]
        self.given = (probs, candidates, {name: maps})

    def __call__(self, model: Any, batch: Any, scores: Any) -> tuple[Tensor, Tensor, dict]:
        return self.given


def _describe(setting: Setting) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in setting)


def _short(value: Any) -> str:
    if isinstance(value, tuple) and value and isinstance(value[0], str):
        return "+".join(value) if len(value) <= 3 else f"{value[0]}..{value[-1]} ({len(value)})"
    if isinstance(value, tuple):
        return "(" + ",".join(f"{v:g}" for v in value) + ")"
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass
class SearchResult:
    """The chosen setting, its score, and every setting scored on the way (in order)."""

    best: Setting
    score: float
    scored: list[tuple[Setting, float]] = field(default_factory=list)


def _scorer(score: Score, result: SearchResult) -> Score:
    seen: dict[Setting, float] = {}

    def scored(setting: Setting) -> float:
        if setting not in seen:
            seen[setting] = score(setting)
            result.scored.append((setting, seen[setting]))
        return seen[setting]

    return scored


def coordinate_search(
    grid: Grid,
    start: Setting,
    score: Score,
    max_rounds: int = 2,
    prefetch: Prefetch | None = None,
) -> SearchResult:
    """Group-wise coordinate ascent over ``grid`` from ``start`` (see the module docstring).

    Args:
        grid: the knobs and groups. start: a setting of every knob (need not be on the grid).
        score: setting -> the value to maximise (mIoU).
        max_rounds: passes over the groups at most.
        prefetch: given each group's settings before they are scored (e.g.
            :meth:`Evaluator.prefetch`, which scores them at once); the result is the same.
    """
    result = SearchResult(start, float("nan"))
    scored = _scorer(score, result)
    current = dict(start)
    best = scored(start)
    for _ in range(max_rounds):
        moved = False
        for group in grid.groups:
            # a group's settings differ from ``current`` in the group's knobs only, so a
            # move inside the group does not change them
            candidates = [
                as_setting({**current, **dict(zip(group, values, strict=True))})
                for values in itertools.product(*(grid.knob(n).values for n in group))
            ]
            if prefetch is not None:
                prefetch(candidates)
            for candidate in candidates:
                value = scored(candidate)
                if value > best:
                    best, current, moved = value, dict(candidate), True
        if not moved:
            break
    result.best, result.score = as_setting(current), best
    return result


def exhaustive_search(grid: Grid, score: Score, prefetch: Prefetch | None = None) -> SearchResult:
    """Score every setting of the grid's product; the first best in product order wins.
    ``prefetch``: as in :func:`coordinate_search`, given the whole product."""
    result = SearchResult((), float("-inf"))
    scored = _scorer(score, result)
    names = [k.name for k in grid.knobs]
    settings = [
        as_setting(dict(zip(names, values, strict=True)))
        for values in itertools.product(*(k.values for k in grid.knobs))
    ]
    if prefetch is not None:
        prefetch(settings)
    for setting in settings:
        value = scored(setting)
        if value > result.score:
            result.best, result.score = setting, value
    return result
