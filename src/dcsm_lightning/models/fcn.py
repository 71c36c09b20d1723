"""``MultiLabelFCN``: the multi-label FCN classifier of the paper (Sec. 3.2)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics.classification import MultilabelAveragePrecision, MultilabelF1Score

from dcsm_lightning.data.classes import names_for_classes
from dcsm_lightning.models.augment import check_scale_range, random_rescale
from dcsm_lightning.models.backbones import create_backbone
from dcsm_lightning.models.optim import build_optimizers
from dcsm_lightning.models.pretrained import load_pretrained
from dcsm_lightning.models.steps import EvaluationSteps
from dcsm_lightning.segmentation.callback import SaliencySegmentation, SaliencySpec


def global_max_pool(score_map: torch.Tensor) -> torch.Tensor:
    """Class score map B x K x h x w -> scores B x K (the paper's global max pooling)."""
    return score_map.amax(dim=(2, 3))


def multilabel_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sigmoid cross-entropy summed over the K classes, averaged over the batch (Eq. 1-2).

    Args:
        logits: B x K raw scores. labels: B x K multi-hot in {0, 1}.
    """
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(1).mean()


class MultiLabelFCN(EvaluationSteps, LightningModule):
    """Multi-label fully convolutional classifier with global max pooling (Sec. 3.2).

    ``forward(image)`` returns the class score map B x K x h x w. Training resizes each batch by
    a random ratio in ``scale_range``. Validation and test log multi-label mAP and F1. With
    saliency strategies, the module is one user of
    :class:`~dcsm_lightning.SaliencySegmentation`: it builds one from its arguments
    and hands it to the trainer (``configure_callbacks``), which then logs the mIoU of every
    method and feeds ``DenseCRF``, ``ComparisonReport`` and ``SegmentationWriter``.

    Args:
        num_classes: K (linked from the datamodule by the CLI).
        backbone: a registered backbone name (``vgg16``, ``vgg_small``).
        pretrained: weights file, ``"hub-cache"`` or None (random init).
        allow_download: let torchvision download VGG-16 weights into the hub cache.
        class_names: K names for logs and reports (linked from the datamodule by the CLI).
        optimizer: optimizer factory; default the paper's SGD (lr 1e-5, momentum 0.9, wd 5e-4).
        lr_scheduler: optional scheduler factory; :class:`~dcsm_lightning.models.WarmupCosineLR`
            takes its length from the trainer and steps per batch.
        scale_range: (low, high) of the per-batch random resize ratio; (1, 1) switches it off.
        saliency: one strategy or a list (names must differ); None disables segmentation. Each
            is a :class:`~dcsm_lightning.saliency.SaliencyStrategy` (``class_path: DCSM``), a
            registry name (``dcsm``; ``[dcsm, simonyan]``) or ``{class_path: <registry name>,
            init_args: {...}}``; entry-point plugins' names included. The arguments below go
            to the module's ``SaliencySegmentation``.
        candidates: ``"predicted"`` (score > threshold, topped up) or ``"labels"`` (oracle tags).
        candidate_threshold: probability above which a class is a candidate.
        min_candidates: top-up size N (0 disables it).
        log_panels: log an image / map / mask grid per validation epoch (TensorBoard).
        segment_in_fit: also compute maps and mIoU in the validation epochs of ``fit`` (slow);
            by default ``fit`` validates the classifier only and ``validate`` / ``test`` segment.
    """

    #: The global pooling it trains with, declared for ``SaliencySegmentation`` and the
    #: strategies (their ``pool=None`` reads it).
    score_pool = "max"

    def __init__(
        self,
        num_classes: int = 20,
        backbone: str = "vgg16",
        pretrained: str | None = None,
        allow_download: bool = False,
        class_names: list[str] | None = None,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        scale_range: tuple[float, float] = (0.7, 1.4),
        saliency: SaliencySpec | list[SaliencySpec] | None = None,
        candidates: Literal["predicted", "labels"] = "predicted",
        candidate_threshold: float = 0.5,
        min_candidates: int = 3,
        log_panels: bool = True,
        segment_in_fit: bool = False,
    ) -> None:
        super().__init__()
        check_scale_range(scale_range)
        self.class_names = names_for_classes(class_names, num_classes)
        if candidates not in ("predicted", "labels"):
            raise ValueError(f"candidates must be 'predicted' or 'labels', got {candidates!r}")
        self.save_hyperparameters(ignore=["saliency", "optimizer", "lr_scheduler"])
        self.backbone = create_backbone(backbone, num_classes)
        if pretrained is not None:
            load_pretrained(self.backbone, pretrained, allow_download)
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.segmentation: SaliencySegmentation | None = None
        if saliency:
            self.segmentation = SaliencySegmentation(
                saliency,
                self.class_names,
                candidates=candidates,
                candidate_threshold=candidate_threshold,
                min_candidates=min_candidates,
                segment_in_fit=segment_in_fit,
                log_panels=log_panels,
            )
        self.val_map = MultilabelAveragePrecision(num_labels=num_classes)
        self.val_f1 = MultilabelF1Score(num_labels=num_classes)
        self.test_map = self.val_map.clone()
        self.test_f1 = self.val_f1.clone()

    def setup(self, stage: str) -> None:
        """Refuse a datamodule ``size`` the backbone gives no score map for (after ``fit``'s
        smallest random rescale), before the first step fails in a convolution."""
        smallest = getattr(self.backbone, "min_input_size", None)
        size = getattr(self.trainer.datamodule, "size", None) if self._trainer else None
        if smallest is None or not isinstance(size, int):
            return
        stage = getattr(stage, "value", stage)  # Lightning passes a str enum
        low = self.hparams.scale_range[0] if stage == "fit" else 1.0
        needed = math.ceil((smallest - 0.5) / low)  # random_rescale rounds the side
        if size < needed:
            after = f" ({smallest} px after the smallest rescale, {low})" if low != 1.0 else ""
            raise ValueError(
                f"data size {size} is too small for backbone {self.hparams.backbone}: {stage} "
                f"needs at least {needed} px{after}"
            )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Image B x 3 x H x W (normalised) -> class score map B x K x h x w."""
        return self.backbone(image)

    def predict_probs(self, image: torch.Tensor) -> torch.Tensor:
        """Image B x 3 x H x W -> class probabilities B x K in [0, 1] (scale 1.0)."""
        return torch.sigmoid(global_max_pool(self(image)))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        image, _ = random_rescale(batch["image"], self.hparams.scale_range)
        logits = global_max_pool(self(image))
        loss = multilabel_loss(logits, batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def _evaluation_step(
        self, batch: dict[str, Any], stage: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        score_map = self(batch["image"])
        logits = global_max_pool(score_map)
        probs = torch.sigmoid(logits)
        if "labels" in batch and stage != "predict":
            labels = batch["labels"]
            batch_size = len(labels)
            loss = multilabel_loss(logits, labels)
            self.log(f"{stage}/loss", loss, batch_size=batch_size, sync_dist=True)
            mean_ap, f1 = (
                (self.val_map, self.val_f1) if stage == "val" else (self.test_map, self.test_f1)
            )
            mean_ap.update(probs, labels.long())
            f1.update(probs, labels.long())
            self.log(f"{stage}/mAP", mean_ap, prog_bar=True, batch_size=batch_size)
            self.log(f"{stage}/F1", f1, batch_size=batch_size)
        return probs, score_map  # the score map: the segmentation's classify, not repeated

    def configure_optimizers(self) -> Any:
        return build_optimizers(
            self.parameters(),
            self.optimizer_factory,
            self.scheduler_factory,
            default=lambda p: torch.optim.SGD(p, lr=1e-5, momentum=0.9, weight_decay=5e-4),
            total_steps=lambda: self.trainer.estimated_stepping_batches,
        )

    @property
    def strategy_names(self) -> Sequence[str]:
        """Names of the configured saliency strategies, in order."""
        return [] if self.segmentation is None else [s.name for s in self.segmentation.strategies]
