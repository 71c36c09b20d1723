"""One :class:`SegmentationOutput` per trainer batch, less the images already finished.

The callback's hooks, the module's step and the writer all ask for a batch's output; the
first request computes it, the others read it. In ``predict``, a resuming writer's
``finished`` filter drops the ids whose files are complete before anything is computed
(image level), and a batch with none left is not computed at all (batch level).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from dcsm_lightning.data.adapter import BatchAdapter, SegmentationBatch
from dcsm_lightning.segmentation.output import SegmentationOutput

__all__ = ["BatchOutputs"]

#: ids of a batch -> those whose outputs are complete already.
FinishedFilter = Callable[[Sequence[str]], set[str]]


class BatchOutputs:
    """The output of the trainer batch last asked for, computed at the first request.

    Args:
        adapter: reads a trainer batch as a :class:`SegmentationBatch`.
    """

    def __init__(self, adapter: BatchAdapter) -> None:
        self.adapter = adapter
        #: set by a resuming writer: in ``predict`` its finished ids are dropped first.
        self.finished: FinishedFilter | None = None
        self._view_key: tuple[Any, ...] | None = None
        self._view: tuple[SegmentationBatch | None, list[int] | None] = (None, None)
        self._key: tuple[Any, ...] | None = None
        self._output: SegmentationOutput | None = None

    def reset(self) -> None:
        """Forget the cached batch (a new loop starts)."""
        self._view_key = self._key = None
        self._view, self._output = (None, None), None

    def view(
        self, batch: Any, batch_idx: int, dataloader_idx: int, stage: str
    ) -> tuple[SegmentationBatch | None, list[int] | None]:
        """The adapted batch less its finished images, and the kept positions (None: all).

        The view is None when every image is finished (``predict`` with a ``finished``
        filter); the filter is asked once per batch.
        """
        key = (stage, dataloader_idx, batch_idx, id(batch))
        if self._view_key != key:
            view, keep = self.adapter(batch, batch_idx), None
            if stage == "predict" and self.finished is not None:
                done = self.finished(view.ids)
                if done:
                    keep = [i for i, image_id in enumerate(view.ids) if image_id not in done]
                    view = view.select(keep) if keep else None
            self._view_key, self._view = key, (view, keep)
        return self._view

    def output(
        self,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
        stage: str,
        compute: Callable[[SegmentationBatch, Tensor | None], SegmentationOutput],
        scores: Tensor | None = None,
    ) -> SegmentationOutput | None:
        """The batch's output (``compute(view, scores)`` at the first request), or None when
        every image of it is finished. ``scores`` (B x ...) are cut to the kept images."""
        key = (stage, dataloader_idx, batch_idx, id(batch))
        if self._key != key:
            view, keep = self.view(batch, batch_idx, dataloader_idx, stage)
            if view is not None and scores is not None and keep is not None:
                scores = scores[keep]
            self._output = None if view is None else compute(view, scores)
            self._key = key
        return self._output
