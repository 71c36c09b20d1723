"""``MultiLabelFCN``: the multi-label FCN classifier of the paper (Sec. 3.2)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics.classification import MultilabelAveragePrecision, MultilabelF1Score

from dcsm_lightning.data.classes import names_for_classes
from dcsm_lightning.models.augment import check_scale_range, random_rescale
from dcsm_lightning.models.backbones import create_backbone
from dcsm_lightning.models.optim import build_optimizers
from dcsm_lightning.models.pretrained import load_pretrained
from dcsm_lightning.models.steps import EvaluationSteps, check_segmentation


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
    a random ratio in ``scale_range``. Validation and test log multi-label mAP and F1. Given a
    ``segmentation`` (a :class:`~dcsm_lightning.SaliencySegmentation`), the module is one
    user of the evaluation flow: it hands it to the trainer (``configure_callbacks``), which
    then logs the mIoU of every method and feeds ``DenseCRF``, ``ComparisonReport`` and
    ``SegmentationWriter``; its steps segment each batch with their own forward.

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
        segmentation: the evaluation flow, a :class:`~dcsm_lightning.SaliencySegmentation`
            (in a config ``{class_path: dcsm_lightning.SaliencySegmentation, init_args:
            {saliency: [dcsm, simonyan], min_candidates: 3}}``: its strategies, candidate
            rule, ``segment_in_fit`` and ``log_panels``; its class names are the module's);
            None (default): the module classifies only.

    Raises:
        ValueError: a bad ``scale_range``, or a ``segmentation`` that is not a
            ``SaliencySegmentation``.
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
        segmentation: Callback | None = None,
    ) -> None:
        super().__init__()
        check_scale_range(scale_range)
        self.class_names = names_for_classes(class_names, num_classes)
        self.segmentation = check_segmentation(segmentation)
        self.save_hyperparameters(ignore=["segmentation", "optimizer", "lr_scheduler"])
        self.backbone = create_backbone(backbone, num_classes)
        if pretrained is not None:
            load_pretrained(self.backbone, pretrained, allow_download)
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
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
