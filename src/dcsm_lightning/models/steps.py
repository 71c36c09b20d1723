"""``EvaluationSteps``: the validation / test / predict steps our two LightningModules share."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback

#: the step's stage -> the trainer's (what the flow and its refiners are told)
_TRAINER_STAGE = {"val": "validate", "test": "test", "predict": "predict"}


class EvaluationSteps:
    """LightningModule mixin: evaluation steps that run the module's segmentation flow.

    The module implements ``_evaluation_step(batch, stage)`` (stage ``"val"``, ``"test"`` or
    ``"predict"``: its own losses and metrics), which returns what the step returns and the
    forward the flow may reuse (class scores B x K (x h x w) for a classifier, logits for a
    segmentation network; None if the flow must run its own), and sets ``self.segmentation``:
    the flow object (a :class:`~dcsm_lightning.SaliencySegmentation`), or None. Handed to the
    trainer by ``configure_callbacks``, the flow is also called from each step, so that

    - a batch is classified once (the step's forward goes to ``segmentation.segment_step``);
    - its maps and masks are done inside the step, before the progress bar ticks;
    - a predict batch whose images are all finished (a resuming writer's outputs exist,
      ``segmentation.finished_batch``) is skipped before the forward; the step returns None.
    """

    segmentation: Any = None

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
