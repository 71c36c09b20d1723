"""Choose the segmentation's settings on a few labelled images: the search behind ``tune``.

:func:`tune_segmentation` searches, for each strategy of a :class:`SaliencySegmentation`, its
own knobs; for the first strategy (the one ``predict`` and ``pseudo-labels`` write) also the
candidate top-up N and the dense CRF's settings, which every strategy then shares. When a
chosen value sits on the grid's edge the grid grows one value past it and the search goes on
(twice at most per knob); an edge that remains is reported. A k-fold cross-validation repeats
the whole search on part of the images to estimate how much of the gain is real.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from dcsm_lightning.crf import CRFSettings, DenseCRF
from dcsm_lightning.saliency import LayerGradient, SaliencyStrategy
from dcsm_lightning.saliency.options import with_options
from dcsm_lightning.segmentation.callback import SaliencySegmentation
from dcsm_lightning.segmentation.flow import CandidateRule, SaliencyMaps
from dcsm_lightning.tuning.cross_validation import CrossValidation, cross_validate
from dcsm_lightning.tuning.grid import (
    Grid,
    Setting,
    as_setting,
    default_grid,
    extended,
    fixed,
    start_setting,
)
from dcsm_lightning.tuning.maps import TuningImages, map_source
from dcsm_lightning.tuning.search import (
    Evaluation,
    Evaluator,
    Prefetch,
    SearchResult,
    coordinate_search,
    exhaustive_search,
)

__all__ = ["StrategyTuning", "Tuning", "tune_segmentation"]

#: How many times a knob's range may grow past an edge.
MAX_EXTENSIONS = 2
#: Grids of at most this many settings are searched exhaustively, larger ones coordinate-wise.
EXHAUSTIVE_LIMIT = 128


def search_grid(
    grid: Grid,
    start: Setting,
    score: Callable[[Setting], float],
    prefetch: Prefetch | None = None,
) -> SearchResult:
    """:func:`exhaustive_search` of a grid of at most :data:`EXHAUSTIVE_LIMIT` settings (the
    grid's best), else :func:`coordinate_search` from ``start`` (a local best). ``prefetch``:
    see :func:`coordinate_search`."""
    if grid.size() <= EXHAUSTIVE_LIMIT:
        return exhaustive_search(grid, score, prefetch)
    return coordinate_search(grid, start, score, prefetch=prefetch)


@dataclass
class StrategyTuning:
    """One strategy's search: grid, configured and chosen settings, their scores."""

    name: str
    grid: Grid
    default: Setting
    search: SearchResult
    default_scores: Evaluation
    tuned_scores: Evaluation
    cross_validation: CrossValidation | None
    strategy: SaliencyStrategy
    extended: list[str]
    edges: list[str]
    #: every setting scored (search and defaults) -> its per-image confusion counts
    scores: dict[Setting, Evaluation]


@dataclass
class Tuning:
    """The outcome of :func:`tune_segmentation`.

    Attributes:
        strategies: per strategy, in the segmentation's order.
        crf: the chosen CRF settings. min_candidates: the chosen N.
        images: how many tuning images. seconds: the wall time.
    """

    strategies: list[StrategyTuning]
    crf: CRFSettings
    min_candidates: int
    images: int
    seconds: float


def search_with_edges(
    grid: Grid,
    start: Setting,
    score: Callable[[Setting], float],
    extend: bool = True,
    prefetch: Prefetch | None = None,
) -> tuple[SearchResult, Grid, list[str]]:
    """:func:`search_grid`, then, while the best sits on an edge, the grid grown past it and
    the search resumed from the best (:data:`MAX_EXTENSIONS` times at most). ``prefetch``:
    see :func:`~dcsm_lightning.tuning.search.coordinate_search`.

    Returns:
        The result (every setting scored, in order), the final grid, the knobs grown.
    """
    result = search_grid(grid, start, score, prefetch)
    grown: list[str] = []
    for _ in range(MAX_EXTENSIONS if extend else 0):
        bigger, added = extended(grid, dict(result.best))
        if not added:
            break
        grid, grown = bigger, grown + added
        more = search_grid(grid, result.best, score, prefetch)
        result = SearchResult(more.best, more.score, result.scored + more.scored)
    return result, grid, sorted(set(grown))


def _tune_one(
    strategy: SaliencyStrategy,
    grid: Grid,
    start: Setting,
    default: Setting,
    evaluator: Evaluator,
    count: int,
    folds: int,
    seed: int,
    extend: bool,
) -> StrategyTuning:
    result, grid, grown = search_with_edges(
        grid, start, lambda s: evaluator(s).miou(), extend, evaluator.prefetch
    )
    # NaN scores (no labelled pixel) never win; ties keep the search's order
    scored = list(dict.fromkeys(setting for setting, value in result.scored if value == value))
    validation = cross_validate(scored, evaluator, count, folds, seed)
    options = grid.split(dict(result.best))["strategy"]
    return StrategyTuning(
        name=strategy.name,
        grid=grid,
        default=default,
        search=result,
        default_scores=evaluator(default),
        tuned_scores=evaluator(result.best),
        cross_validation=validation,
        strategy=with_options(strategy, **options),
        extended=grown,
        edges=grid.edges(dict(result.best)),
        scores=evaluator.cache,
    )


def candidate_rule(segmentation: SaliencySegmentation) -> CandidateRule:
    """The segmentation's candidate rule (source, threshold, N): where the search starts.

    Raises:
        ValueError: its maps do not come from saliency strategies.
    """
    if not isinstance(segmentation.source, SaliencyMaps):
        raise ValueError("tune needs a segmentation whose maps come from saliency strategies")
    return segmentation.source.candidates


def with_concrete_layers(strategy: SaliencyStrategy, model: nn.Module) -> SaliencyStrategy:
    """``strategy`` with the layers it would read on ``model`` written out (a
    ``LayerGradient`` / DCSM given no ``layers`` reads the model's defaults): the grid's layer
    sets are made from them, and ``tuned.yaml`` names them. Other strategies as they are."""
    if not isinstance(strategy, LayerGradient) or strategy.layers is not None:
        return strategy
    choice = strategy.layer_choice(model)
    return with_options(strategy, layers=tuple(choice.paths), at=choice.at)


def _say(line: str) -> None:
    print(line, flush=True)


def strategy_evaluator(
    strategy: SaliencyStrategy,
    model: nn.Module,
    segmentation: SaliencySegmentation,
    images: TuningImages,
    grid: Grid,
    crf: CRFSettings,
    refiner: DenseCRF,
    progress: Callable[[str], None] | None = None,
) -> Evaluator:
    """The :class:`Evaluator` of ``strategy`` on ``images`` over ``grid`` (its maps stored for
    every value the grid, grown past its edges, may ask for), candidates as ``segmentation``
    chooses them."""
    values = {k.name: k.values for k in grid.knobs if k.target == "strategy"}
    top_ups = grid.knob("min_candidates").values
    top_ups = (*top_ups, *(max(top_ups) + 1 + i for i in range(MAX_EXTENSIONS)))
    source = map_source(
        strategy, model, images, values, top_ups, candidate_rule(segmentation).source,
        candidate_rule(segmentation).threshold,
    )  # fmt: skip
    segmentation.attach(model)  # its class names are the model's unless it was given some
    labels = len(segmentation.class_names) + 1
    return Evaluator(grid, source, crf, labels, refiner, progress=progress)


def tune_segmentation(
    model: nn.Module,
    segmentation: SaliencySegmentation,
    crf: CRFSettings,
    loader: Iterable[Any],
    folds: int = 5,
    seed: int = 0,
    crf_workers: int | None = None,
    progress: Callable[[str], None] = _say,
    grid_values: Mapping[str, Sequence[Any]] | None = None,
    extend: bool = True,
    crf_backend: str = "auto",
) -> Tuning:
    """Search each strategy's settings on the labelled images of ``loader``.

    Args:
        model: the classifier (eval mode), image B x 3 x S x S -> scores B x K (x h x w).
        segmentation: its strategies and candidate rule (source, threshold, N) are the
            search's start ("default").
        crf: the configured CRF settings (the start of the CRF knobs).
        loader: batches of the batch contract with ``mask`` (the tuning images; never val).
        folds: k of the cross-validation (fewer with fewer images; < 2 skips it).
        seed: the folds' draw.
        crf_workers: ``DenseCRF(num_workers=...)`` of the CRF variants.
        progress: called with status lines.
        grid_values: knob name -> values, replacing the default grid's (every strategy).
        extend: grow the grid past an edge the best setting sits on.
        crf_backend: ``DenseCRF(backend=...)`` of the CRF variants (the configured one's).

    Returns:
        A :class:`Tuning`; scores are mIoU in [0, 1] with and without the CRF.
    """
    start_time = time.perf_counter()
    images = TuningImages.collect(model, loader)
    count = len(images)
    progress(f"{count} tuning images")
    refiner = DenseCRF(num_workers=crf_workers, backend=crf_backend)
    done: list[StrategyTuning] = []
    configured_n = candidate_rule(segmentation).min_candidates
    chosen_crf, chosen_n = crf, configured_n
    try:
        for index, configured in enumerate(segmentation.strategies):
            first = index == 0
            strategy = with_concrete_layers(configured, model)
            grid = default_grid(strategy, configured_n, crf, grid_values)
            default = start_setting(grid, strategy, configured_n, crf)
            start = default
            if not first:  # N and the CRF as chosen for the first strategy
                shared = {"min_candidates": chosen_n, **asdict(chosen_crf)}
                shared = {k.name: shared[k.name] for k in grid.knobs if k.target != "strategy"}
                grid = fixed(grid, shared)
                start = as_setting({**dict(default), **shared})
            progress(f"{strategy.name}: maps of {count} images ...")
            evaluator = strategy_evaluator(
                strategy, model, segmentation, images, grid, crf, refiner, progress
            )
            done.append(
                _tune_one(strategy, grid, start, default, evaluator, count, folds, seed, extend)
            )
            if first:
                chosen = dict(done[0].search.best)
                chosen_n = int(chosen["min_candidates"])
                chosen_crf = evaluator.crf_settings(done[0].search.best)
    finally:
        refiner.close()
    return Tuning(done, chosen_crf, chosen_n, count, time.perf_counter() - start_time)
