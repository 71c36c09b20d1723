"""What the evaluation flow produces for one batch, and what a mask refiner looks like.

:class:`SegmentationOutput` is made by
:class:`~dcsm_lightning.SaliencySegmentation` and read by the writer, the CRF
callback's users and anyone's code; :class:`MaskRefiner` is the protocol a post-processing
callback (e.g. :class:`~dcsm_lightning.crf.DenseCRF`) follows to add its masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import lightning.pytorch as pl
from torch import Tensor

from dcsm_lightning.data.adapter import SegmentationBatch
from dcsm_lightning.segmentation.labels import LabelProbs
from dcsm_lightning.segmentation.methods import Method

__all__ = ["MaskRefiner", "SegmentationOutput"]


@dataclass
class SegmentationOutput:
    """Everything computed for one batch (B images, K classes, S x S pixels).

    Attributes:
        batch: the batch as read by the adapter (ids, rgb, orig_size, valid, mask, ...).
        probs: float (B, K), sigmoid class scores in [0, 1].
        candidates: bool (B, K), the classes the maps were computed for.
        maps: strategy name -> float (B, K, S, S) in [0, 1], 0 for non-candidates.
        masks: :class:`~dcsm_lightning.segmentation.methods.Method` (a ``str``: index it
            with ``"dcsm+crf"``) -> int64 (B, S, S) dataset ids (0 = background, class k ->
            k + 1, 255 = void / padding). A plain ``str`` key is taken as a strategy's plain
            masks (``Method(key)``); name refined masks with
            :func:`~dcsm_lightning.method_name`.
    """

    batch: SegmentationBatch
    probs: Tensor
    candidates: Tensor
    maps: dict[str, Tensor]
    masks: dict[str, Tensor]

    def __post_init__(self) -> None:
        self.masks = {
            key if isinstance(key, Method) else Method(key): value
            for key, value in self.masks.items()
        }

    def method(self, name: str) -> Method | None:
        """The key of ``masks`` named ``name`` (with its strategy and step), or None."""
        return next((key for key in self.masks if key == name), None)


@runtime_checkable
class MaskRefiner(Protocol):
    """A post-processing step that turns one strategy's maps into refined masks.

    Any callback of the trainer with these two members is picked up by
    :class:`SaliencySegmentation`; its masks are named ``method_name(strategy, name)``, so
    ``name`` (an instance's setting) must differ between the refiners of one run.
    """

    name: str

    def refine(
        self, trainer: pl.Trainer | None, stage: str, batch: SegmentationBatch, probs: LabelProbs
    ) -> Tensor | None:
        """Masks int64 (B, S, S) from a strategy's Eq. 7 probabilities (``probs.maps``
        (B, K, S, S), ``probs.candidates`` (B, K), ``probs.background``); None = skip."""
        ...
