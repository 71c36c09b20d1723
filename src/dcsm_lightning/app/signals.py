"""``StopOnSigterm``: end ``predict`` at a batch boundary when a batch scheduler sends SIGTERM.

Lightning records SIGTERM (``trainer.received_sigterm``) and its fit and evaluation loops stop
on it, but its prediction loop carries on to the end. This callback stops it before the next
batch: every image of the finished batches is written completely, the run ends with
:class:`~dcsm_lightning.errors.Interrupted` (a non-zero exit), and the same command run again
skips the written images and finishes the set (see
:class:`~dcsm_lightning.SegmentationWriter`).
"""

from __future__ import annotations

import signal
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from dcsm_lightning.errors import Interrupted


class StopOnSigterm(Callback):
    """Raise :class:`~dcsm_lightning.errors.Interrupted` at the start of the first predict
    batch after the process received SIGTERM."""

    def on_predict_batch_start(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.received_sigterm:
            raise Interrupted(
                signal.SIGTERM,
                f"stopped on SIGTERM after {batch_idx} predict batches; the files written are "
                "complete: run the same command again to finish",
            )
