"""The evaluation flow as one function: a batch -> maps -> Eq. 7 masks -> refined masks.

:func:`segment_batch` is the one place the flow is composed. Its doors:
:class:`~dcsm_lightning.SaliencySegmentation` (the callback, for Lightning's loops and the
writer) and anyone's own loop (``benchmarks/reproduction/``, a notebook). What makes the maps
is a :class:`MapSource`: :class:`SaliencyMaps` (a classifier's scores -> candidates ->
saliency strategies) or :class:`~dcsm_lightning.segmentation.network_maps.NetworkMaps` (a
segmentation network's logits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from dcsm_lightning.data.adapter import SegmentationBatch
from dcsm_lightning.saliency import SaliencyStrategy, model_pool, pool_scores, select_candidates
from dcsm_lightning.saliency.pooling import Pool
from dcsm_lightning.segmentation.labels import label_probs
from dcsm_lightning.segmentation.methods import Method
from dcsm_lightning.segmentation.output import MaskRefiner, SegmentationOutput

__all__ = ["CandidateRule", "MapSource", "SaliencyMaps", "segment_batch"]

#: what a :class:`MapSource` gives: probabilities (B, K), candidates (B, K), maps per name.
Maps = tuple[Tensor, Tensor, dict[str, Tensor]]


@dataclass(frozen=True)
class CandidateRule:
    """Which classes get a map: the one place the candidate options are checked.

    Args:
        source: ``"predicted"`` (probability > ``threshold``, topped up to
            ``min_candidates``: :func:`~dcsm_lightning.saliency.select_candidates`) or
            ``"labels"`` (the batch's image tags).
        threshold: probability above which a class is a candidate.
        min_candidates: top-up size N (0 disables it).

    Raises:
        ValueError: an unknown ``source`` or a negative ``min_candidates``.
    """

    source: Literal["predicted", "labels"] = "predicted"
    threshold: float = 0.5
    min_candidates: int = 3

    def __post_init__(self) -> None:
        if self.source not in ("predicted", "labels"):
            raise ValueError(f"candidates must be 'predicted' or 'labels', got {self.source!r}")
        if self.min_candidates < 0:
            raise ValueError(f"min_candidates must be >= 0, got {self.min_candidates}")

    def select(self, probs: Tensor, batch: SegmentationBatch) -> Tensor:
        """Candidates bool (B, K) from probabilities (B, K) in [0, 1] or the batch's tags.

        Raises:
            ValueError: ``source="labels"`` and the batch has no ``labels``.
        """
        if self.source == "labels":
            if batch.labels is None:
                raise ValueError("candidates='labels' needs the batch's image tags (labels)")
            return batch.labels.to(probs.device) > 0.5
        return select_candidates(probs, self.threshold, self.min_candidates)


@runtime_checkable
class MapSource(Protocol):
    """What makes a batch's maps: ``source(model, batch, scores) -> (probs, candidates, maps)``.

    ``names`` are the keys of ``maps`` (each a strategy part of the methods). ``scores`` is
    the module's own forward on ``batch.image`` when its step already ran it (B x K scores
    or B x K x h x w score maps, logits), else None (the source runs it).
    """

    names: list[str]

    def __call__(self, model: nn.Module, batch: SegmentationBatch, scores: Tensor | None) -> Maps:
        """Probabilities float (B, K) in [0, 1], candidates bool (B, K), maps per name
        float (B, K, S, S) in [0, 1] (0 for non-candidates)."""
        ...


class SaliencyMaps:
    """The classifier's map source: scores -> candidates -> every strategy's maps.

    Args:
        strategies: the saliency strategies (distinct names).
        candidates: the candidate rule; default :class:`CandidateRule` (the paper's).
        pool: how a score map becomes scores (B, K) for the probabilities: ``"max"``,
            ``"avg"`` or a callable; None: the model's ``score_pool``, else ``"max"``
            (:func:`~dcsm_lightning.saliency.model_pool`).
    """

    def __init__(
        self,
        strategies: Sequence[SaliencyStrategy],
        candidates: CandidateRule | None = None,
        pool: Pool | None = None,
    ) -> None:
        self.strategies = list(strategies)
        self.candidates = CandidateRule() if candidates is None else candidates
        self.pool = pool

    @property
    def names(self) -> list[str]:
        """The strategies' names, in order."""
        return [s.name for s in self.strategies]

    @staticmethod
    def probs(
        model: nn.Module, image: Tensor, scores: Tensor | None = None, pool: Pool | None = None
    ) -> Tensor:
        """Class probabilities (B, K) in [0, 1]: sigmoid of ``scores`` (``model(image)`` when
        None) pooled by ``pool`` (None: the model's ``score_pool``, else max)."""
        if scores is None:
            with torch.no_grad():
                scores = model(image)
        return torch.sigmoid(pool_scores(scores.detach(), model_pool(model, pool)).float())

    def __call__(
        self, model: nn.Module, batch: SegmentationBatch, scores: Tensor | None = None
    ) -> Maps:
        probs = self.probs(model, batch.image, scores, self.pool)
        candidates = self.candidates.select(probs, batch)
        # Each strategy turns autograd back on itself (Lightning evaluates under inference mode).
        maps = {s.name: s(model, batch.image, candidates) for s in self.strategies}
        return probs, candidates, maps


def segment_batch(
    model: nn.Module,
    batch: SegmentationBatch,
    strategies: Sequence[SaliencyStrategy] | MapSource,
    refiners: Sequence[MaskRefiner] = (),
    *,
    candidates: CandidateRule | None = None,
    scores: Tensor | None = None,
    stage: str = "predict",
    trainer: pl.Trainer | None = None,
) -> SegmentationOutput:
    """Maps, masks (Eq. 7) and refined masks of one adapted batch: the evaluation flow.

    Each map source's maps are checked and turned into Eq. 7 probabilities once
    (:func:`~dcsm_lightning.segmentation.labels.label_probs`); the plain masks and every
    refiner read those.

    Args:
        model: the module, image (B, 3, S, S) -> scores (B, K) or (B, K, h, w) (for
            :class:`SaliencyMaps`; a :class:`MapSource` may ask for more).
        batch: the adapted batch (:class:`~dcsm_lightning.data.adapter.SegmentationBatch`).
        strategies: saliency strategies (read with ``candidates``) or a :class:`MapSource`.
        refiners: refinement steps (e.g. :class:`~dcsm_lightning.crf.DenseCRF`), each adding
            ``Method(strategy, refiner.name)`` masks.
        candidates: the candidate rule of ``strategies`` (default :class:`CandidateRule`).
        scores: the module's forward on ``batch.image`` if already computed (not repeated).
        stage: ``"validate"``, ``"test"`` or ``"predict"`` (refiners may skip some).
        trainer: the running trainer, or None (refiners size their worker pools by it).

    Returns:
        a :class:`SegmentationOutput`; masks keyed by
        :class:`~dcsm_lightning.segmentation.methods.Method`, each strategy followed by its
        refined variants, int64 (B, S, S) dataset ids (255 off ``batch.valid``).
    """
    source = (
        strategies if isinstance(strategies, MapSource) else SaliencyMaps(strategies, candidates)
    )
    probs, chosen, maps = source(model, batch, scores)
    masks: dict[str, Tensor] = {}
    for name, name_maps in maps.items():
        method = Method(name)
        eq7 = label_probs(name_maps, chosen, batch.valid)  # the one check of these maps
        masks[method] = eq7.labels(batch.valid)
        for refiner in refiners:
            refined = refiner.refine(trainer, stage, batch, eq7)
            if refined is not None:
                masks[method.refined(refiner.name)] = refined
    return SegmentationOutput(batch, probs, chosen, maps, masks)
