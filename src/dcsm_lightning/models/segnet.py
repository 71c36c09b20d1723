"""``SegmentationNet``: the second stage, a segmentation network trained on pseudo-labels."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn

from dcsm_lightning.models.augment import check_scale_range, random_rescale
from dcsm_lightning.models.evaluation import EvaluationSteps, SegmentationEvaluator
from dcsm_lightning.models.optim import build_optimizers
from dcsm_lightning.models.segheads import create_segmenter, load_segmenter_weights
from dcsm_lightning.segment import VOID, maps_from_label_logits


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

    Validation / test / predict steps return the step outputs of ``docs/contracts.md`` under
    the method name ``name``: ``masks[name]`` is the per-pixel argmax (255 on padding),
    ``maps[name]`` the class maps of :func:`~dcsm_lightning.segment.maps_from_label_logits`
    (so :class:`~dcsm_lightning.crf.DenseCRF` adds ``masks[name + "+crf"]``), ``candidates`` the
    classes that win at least one pixel and ``probs`` B x K the highest probability of each
    class over the image. mIoU is logged as ``val/miou/<name>`` (and ``+crf``) by the
    classifier's evaluator, so :class:`~dcsm_lightning.comparison.ComparisonReport` tabulates
    it. In ``fit``'s validation epochs ``maps`` are left out (no CRF) unless ``crf_in_fit``.

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
        lr_scheduler: optional scheduler factory.
        scale_range: (low, high) of the per-batch random resize; (1, 1) switches it off.
        name: the method name in logs and reports.
        crf_in_fit: also return ``maps`` in ``fit``'s validation epochs (slow with DenseCRF).
        log_panels: log an image / map / mask grid per validation epoch (TensorBoard).
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
        scale_range: tuple[float, float] = (1.0, 1.0),
        name: str = "segnet",
        crf_in_fit: bool = False,
        log_panels: bool = True,
    ) -> None:
        super().__init__()
        check_scale_range(scale_range)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} names but num_classes is {num_classes}"
            )
        if not name or "/" in name:
            raise ValueError(f"name must be a non-empty method name without '/', got {name!r}")
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.net = create_segmenter(head, num_classes + 1, backbone, dilation, head_width)
        self.class_names = list(class_names or [f"class_{k}" for k in range(num_classes)])
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.evaluator = SegmentationEvaluator([], self.class_names, log_panels)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Image B x 3 x H x W (normalised) -> logits B x (K + 1) x H x W."""
        return self.net(image)

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

    def segment(
        self, logits: torch.Tensor, valid: torch.Tensor | None, with_maps: bool
    ) -> dict[str, Any]:
        """Step outputs (``docs/contracts.md``) from logits B x (K + 1) x S x S."""
        name = self.hparams.name
        labels = logits.argmax(dim=1)
        if valid is not None:
            labels = labels.masked_fill(~valid, VOID)
        classes = torch.arange(1, logits.shape[1], device=labels.device)
        candidates = (labels[:, None] == classes[None, :, None, None]).flatten(2).any(2)
        probs = logits.softmax(dim=1)[:, 1:]
        if valid is not None:
            probs = probs.masked_fill(~valid[:, None], 0.0)
        outputs: dict[str, Any] = {
            "probs": probs.flatten(2).amax(2),
            "candidates": candidates,
            "masks": {name: labels},
        }
        if with_maps:
            maps = maps_from_label_logits(logits) * candidates[..., None, None]
            outputs["maps"] = {name: maps}
        return outputs

    def _evaluation_step(self, batch: dict[str, Any], stage: str) -> dict[str, Any]:
        logits = self(batch["image"])
        if "mask" in batch and stage != "predict":
            loss = segmentation_loss(logits, batch["mask"])
            self.log(f"{stage}/loss", loss, batch_size=len(logits), sync_dist=True)
        in_fit = self._trainer is not None and self.trainer.state.fn == "fit"
        return self.segment(logits, batch.get("valid"), self.hparams.crf_in_fit or not in_fit)

    def configure_optimizers(self) -> Any:
        return build_optimizers(
            self.parameters(),
            self.optimizer_factory,
            self.scheduler_factory,
            default=lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, weight_decay=5e-4),
        )
