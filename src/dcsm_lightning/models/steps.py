"""``EvaluationSteps``: the validation / test / predict steps our two LightningModules share."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback

from dcsm_lightning.segmentation.callback import SaliencySegmentation


class EvaluationSteps:
    """LightningModule mixin: evaluation steps and the module's segmentation callback.

    The module implements ``_evaluation_step(batch, stage)`` (stage ``"val"``, ``"test"`` or
    ``"predict"``: its own losses and metrics) and sets ``self.segmentation`` (a
    :class:`~dcsm_lightning.SaliencySegmentation`, or None); the segmentation,
    handed to the trainer by ``configure_callbacks``, produces the masks and mIoU.
    """

    segmentation: SaliencySegmentation | None = None

    def _evaluation_step(self, batch: dict[str, Any], stage: str) -> torch.Tensor | None:
        raise NotImplementedError

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        return self._evaluation_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        return self._evaluation_step(batch, "test")

    def predict_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> torch.Tensor | None:
        return self._evaluation_step(batch, "predict")

    def configure_callbacks(self) -> list[Callback]:
        """The module's segmentation (it replaces one of the same class given to the trainer)."""
        return [] if self.segmentation is None else [self.segmentation]
