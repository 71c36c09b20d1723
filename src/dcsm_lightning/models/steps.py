"""``EvaluationSteps``: the validation / test / predict steps our two LightningModules share."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from lightning.pytorch import Callback

__all__ = ["EvaluationSteps", "SegmentationFlow", "check_segmentation"]

#: the step's stage -> the trainer's (what the flow and its refiners are told)
_TRAINER_STAGE = {"val": "validate", "test": "test", "predict": "predict"}


@runtime_checkable
class SegmentationFlow(Protocol):
    """What a module's steps call on the segmentation object it holds (a
    :class:`~dcsm_lightning.SaliencySegmentation`; ``models/`` does not import it)."""

    def finished_batch(
        self, trainer: Any, batch: Any, batch_idx: int, dataloader_idx: int, stage: str
    ) -> bool:
        """Whether every image of the batch is finished (a resuming writer's)."""
        ...

    def segment_step(
        self,
        pl_module: Any,
        trainer: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
        stage: str,
        scores: torch.Tensor | None,
    ) -> None:
        """Segment the batch with the step's forward ``scores``."""
        ...


def check_segmentation(segmentation: Callback | None) -> Callback | None:
    """``segmentation`` if it is None or a callback with the :class:`SegmentationFlow` methods.

    Raises:
        ValueError: another object (e.g. a plain callback, or a strategy name).
    """
    if segmentation is None or (
        isinstance(segmentation, Callback) and isinstance(segmentation, SegmentationFlow)
    ):
        return segmentation
    raise ValueError(
        f"segmentation must be a SaliencySegmentation (class_path: SaliencySegmentation, "
        f"init_args: {{saliency: [...]}}), got {type(segmentation).__name__}"
    )


class EvaluationSteps:
    """LightningModule mixin: evaluation steps that run the module's segmentation flow.

    The module implements ``_evaluation_step(batch, stage)`` (stage ``"val"``, ``"test"`` or
    ``"predict"``: its own losses and metrics), which returns what the step returns and the
    forward the flow may reuse (class scores B x K (x h x w) for a classifier, logits for a
    segmentation network; None if the flow must run its own), and sets ``self.segmentation``:
    the flow object it was given (a :class:`~dcsm_lightning.SaliencySegmentation`, see
    :class:`SegmentationFlow`), or None. Handed to the
    trainer by ``configure_callbacks``, the flow is also called from each step, so that

    - a batch is classified once (the step's forward goes to ``segmentation.segment_step``);
    - its maps and masks are done inside the step, before the progress bar ticks;
    - a predict batch whose images are all finished (a resuming writer's outputs exist,
      ``segmentation.finished_batch``) is skipped before the forward; the step returns None.
    """

    segmentation: Callback | None = None

    def _evaluation_step(
        self, batch: dict[str, Any], stage: str
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        raise NotImplementedError

    def _step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int, stage: str
    ) -> torch.Tensor | None:
        flow = self.segmentation
        trainer = getattr(self, "_trainer", None)  # None: called outside a trainer's loop
        where = (trainer, batch, batch_idx, dataloader_idx, _TRAINER_STAGE[stage])
        if flow is not None and flow.finished_batch(*where):
            return None
        output, scores = self._evaluation_step(batch, stage)
        if flow is not None:
            flow.segment_step(self, *where, scores=scores)
        return output

    def validation_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> torch.Tensor | None:
        return self._step(batch, batch_idx, dataloader_idx, "val")

    def test_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> torch.Tensor | None:
        return self._step(batch, batch_idx, dataloader_idx, "test")

    def predict_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> torch.Tensor | None:
        return self._step(batch, batch_idx, dataloader_idx, "predict")

    def configure_callbacks(self) -> list[Callback]:
        """The module's segmentation (it replaces one of the same class given to the trainer)."""
        return [] if self.segmentation is None else [self.segmentation]
