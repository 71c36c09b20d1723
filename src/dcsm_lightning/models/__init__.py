"""Multi-label FCN classifiers (backbones with the paper's layer names, the LightningModule) and
the second stage's segmentation network."""

from dcsm_lightning.models.backbones import (
    VGGFCN,
    create_backbone,
    list_backbones,
    register_backbone,
)
from dcsm_lightning.models.fcn import MultiLabelFCN, global_max_pool, multilabel_loss
from dcsm_lightning.models.finetuning import TwoStageFinetuning
from dcsm_lightning.models.schedules import WarmupCosineLR
from dcsm_lightning.models.segheads import create_segmenter, load_segmenter_weights
from dcsm_lightning.models.segnet import SegmentationNet, segmentation_loss

__all__ = [
    "VGGFCN",
    "MultiLabelFCN",
    "SegmentationNet",
    "TwoStageFinetuning",
    "WarmupCosineLR",
    "create_backbone",
    "create_segmenter",
    "global_max_pool",
    "list_backbones",
    "load_segmenter_weights",
    "multilabel_loss",
    "register_backbone",
    "segmentation_loss",
]
