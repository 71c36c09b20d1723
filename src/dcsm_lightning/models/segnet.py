"""``SegmentationNet``: the second stage, a segmentation network trained on pseudo-labels."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn

from dcsm_lightning.data.classes import names_for_classes
from dcsm_lightning.models.augment import check_scale_range, random_rescale
from dcsm_lightning.models.optim import build_optimizers
from dcsm_lightning.models.segheads import (
    backbone_parameters,
    create_segmenter,
    load_segmenter_weights,
)
from dcsm_lightning.models.steps import EvaluationSteps, check_segmentation
from dcsm_lightning.models.test_time import check_eval_scales, multi_scale_logits
from dcsm_lightning.palette import VOID


def segmentation_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy, averaged over the pixels whose label is not void (255).

    Args:
        logits: float B x L x H x W raw scores (L = K + 1 labels).
        mask: int64 B x H x W label ids in [0, L) or 255.

    Returns:
        a scalar; 0 (still connected to ``logits``) when every pixel is void.
    """
    if not (mask != VOID).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, mask, ignore_index=VOID)


class SegmentationNet(EvaluationSteps, LightningModule):
    """A fully supervised semantic segmentation network, trained on (pseudo-)label masks.

    The second stage of weakly supervised segmentation: train on the masks written by
    ``dcsm-lightning pseudo-labels`` (``data.train_mask_root``), validate on the ground truth.
    ``forward(image)`` returns logits B x (K + 1) x H x W. Training minimises
    :func:`segmentation_loss` (void 255 ignored) on batches resized by a random ratio in
    ``scale_range``.

    It evaluates through the same flow as the classifier: given a ``segmentation`` (a
    :class:`~dcsm_lightning.segmentation.network.NetworkSegmentation`, handed to the trainer
    by ``configure_callbacks``), the logits of :meth:`segment_logits` (``eval_scales`` /
    ``eval_flip``) become maps (``label_maps``) under the segmentation's method ``name``, so
    ``masks[name]`` is the per-pixel argmax (255 on padding),
    :class:`~dcsm_lightning.crf.DenseCRF` adds ``name + "+crf"``, mIoU is logged as
    ``val/miou/<name>`` and :class:`~dcsm_lightning.ComparisonReport` and
    :class:`~dcsm_lightning.SegmentationWriter` read it. ``fit``'s validation epochs log the
    loss only, unless the segmentation's ``segment_in_fit``.

    Args:
        num_classes: K (linked from the datamodule by the CLI); the network has K + 1 outputs.
        class_names: K names for logs (linked from the datamodule).
        head: ``largefov`` (DeepLab-LargeFOV on a VGG backbone), ``deeplabv3_resnet50`` or
            ``fcn_resnet50`` (torchvision).
        backbone: ``largefov``'s VGG backbone (``vgg16``, ``vgg_small``; None: ``vgg16``).
        dilation: ``largefov``'s fc6 dilation (DeepLab: 12; keep it below input side / 8).
        head_width: ``largefov``'s fc6 / fc7 width (None: the backbone's, at most 1024).
        pretrained: weights loaded when ``fit`` starts (not when resuming): a
            :class:`~dcsm_lightning.models.MultiLabelFCN` checkpoint (the classifier of the
            first stage), an ImageNet VGG-16 / ResNet-50 or torchvision segmentation weights
            file, or ``"hub-cache"``; see
            :func:`~dcsm_lightning.models.segheads.load_segmenter_weights`.
        allow_download: let torchvision download the ImageNet weights into the hub cache.
        optimizer: optimizer factory; default SGD (lr 1e-3, momentum 0.9, weight decay 5e-4).
        lr_scheduler: optional scheduler factory; :class:`~dcsm_lightning.models.WarmupCosineLR`
            takes its length from the trainer and steps per batch.
        backbone_lr_factor: the backbone's learning rate (see
            :func:`~dcsm_lightning.models.segheads.backbone_parameters`) is the optimizer's
            times this; the head trains at the optimizer's. Below 1 when the backbone is
            pretrained (DeepLab: 0.1, its new classifier at 10 x the rest).
        scale_range: (low, high) of the per-batch random resize; (1, 1) switches it off.
        eval_scales: input scales whose softmax is averaged when segmenting (validate, test,
            predict; see :func:`~dcsm_lightning.models.test_time.multi_scale_logits`); the
            default ``[1.0]`` is one plain forward pass. The loss is always the plain pass.
        eval_flip: also average the left-right mirrored input at each scale.
        segmentation: the evaluation flow (in a config ``{class_path:
            dcsm_lightning.NetworkSegmentation, init_args: {name: segnet}}``: the method
            name, ``segment_in_fit``, ``log_panels``); None (default): the loss only.

    Raises:
        ValueError: a bad ``scale_range``, ``eval_scales`` or ``backbone_lr_factor``, or a
            ``segmentation`` that is not a ``SaliencySegmentation``.
    """

    def __init__(
        self,
        num_classes: int = 20,
        class_names: list[str] | None = None,
        head: str = "largefov",
        backbone: str | None = None,
        dilation: int = 12,
        head_width: int | None = None,
        pretrained: str | None = None,
        allow_download: bool = False,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        backbone_lr_factor: float = 1.0,
        scale_range: tuple[float, float] = (1.0, 1.0),
        eval_scales: list[float] | None = None,
        eval_flip: bool = False,
        segmentation: Callback | None = None,
    ) -> None:
        super().__init__()
        check_scale_range(scale_range)
        check_eval_scales(eval_scales or [1.0])
        if not backbone_lr_factor >= 0:
            raise ValueError(f"backbone_lr_factor must be >= 0, got {backbone_lr_factor}")
        self.class_names = names_for_classes(class_names, num_classes)
        self.segmentation = check_segmentation(segmentation)
        self.save_hyperparameters(ignore=["segmentation", "optimizer", "lr_scheduler"])
        self.net = create_segmenter(head, num_classes + 1, backbone, dilation, head_width)
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Image B x 3 x H x W (normalised) -> logits B x (K + 1) x H x W."""
        return self.net(image)

    def segment_logits(self, image: torch.Tensor) -> torch.Tensor:
        """What segmenting reads: :func:`~dcsm_lightning.models.test_time.multi_scale_logits`
        over ``eval_scales`` (and ``eval_flip``); image B x 3 x H x W -> B x (K + 1) x H x W."""
        scales = self.hparams.eval_scales or [1.0]
        return multi_scale_logits(self, image, scales, self.hparams.eval_flip)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.pretrained and self.trainer.ckpt_path is None:
            load_segmenter_weights(self.net, self.hparams.pretrained, self.hparams.allow_download)

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and getattr(datamodule, "train_mask_root", "") is None:
            rank_zero_warn(
                "SegmentationNet trains on the dataset's own masks (data.train_mask_root is "
                "not set): full supervision, not pseudo-labels"
            )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if "mask" not in batch:
            raise ValueError(
                "SegmentationNet trains on masks but the training batches have none: set "
                "data.init_args.train_mask_root to a pseudo-labels folder"
            )
        image, mask = random_rescale(batch["image"], self.hparams.scale_range, batch["mask"])
        loss = segmentation_loss(self(image), mask)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(image))
        return loss

    def _evaluation_step(
        self, batch: dict[str, Any], stage: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self(batch["image"])
        if "mask" in batch and stage != "predict":
            loss = segmentation_loss(logits, batch["mask"])
            self.log(f"{stage}/loss", loss, batch_size=len(logits), sync_dist=True)
        # one plain pass is what segmenting reads too: the flow reuses it
        plain = (self.hparams.eval_scales or [1.0]) == [1.0] and not self.hparams.eval_flip
        return logits, logits if plain else None

    def configure_optimizers(self) -> Any:
        backbone = {id(p) for p in backbone_parameters(self.net)}
        groups = [
            {
                "params": [p for p in self.parameters() if id(p) in backbone],
                "lr_factor": self.hparams.backbone_lr_factor,
            },
            {"params": [p for p in self.parameters() if id(p) not in backbone]},
        ]
        return build_optimizers(
            groups,
            self.optimizer_factory,
            self.scheduler_factory,
            default=lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, weight_decay=5e-4),
            total_steps=lambda: self.trainer.estimated_stepping_batches,
        )
