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

__all__ = ["MaskRefiner", "SegmentationOutput"]


@dataclass
class SegmentationOutput:
    """Everything computed for one batch (B images, K classes, S x S pixels).

    Attributes:
        batch: the batch as read by the adapter (ids, rgb, orig_size, valid, mask, ...).
        probs: float (B, K), sigmoid class scores in [0, 1].
        candidates: bool (B, K), the classes the maps were computed for.
        maps: strategy name -> float (B, K, S, S) in [0, 1], 0 for non-candidates.
        masks: method name (:func:`~dcsm_lightning.method_name`) -> int64 (B, S, S)
            dataset ids (0 = background, class k -> k + 1, 255 = void / padding).
    """

    batch: SegmentationBatch
    probs: Tensor
    candidates: Tensor
    maps: dict[str, Tensor]
    masks: dict[str, Tensor]


@runtime_checkable
class MaskRefiner(Protocol):
    """A post-processing step that turns one strategy's maps into refined masks.

    Any callback of the trainer with these two members is picked up by
    :class:`SaliencySegmentation`; its masks are named ``method_name(strategy, step)``.
    """

    step: str

    def refine(
        self,
        trainer: pl.Trainer,
        stage: str,
        batch: SegmentationBatch,
        maps: Tensor,
        candidates: Tensor,
    ) -> Tensor | None:
        """Masks int64 (B, S, S) from maps (B, K, S, S) and candidates (B, K); None = skip."""
        ...
