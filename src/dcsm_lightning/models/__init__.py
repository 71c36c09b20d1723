"""Multi-label FCN classifiers: backbones with the paper's layer names and the LightningModule."""

from dcsm_lightning.models.backbones import (
    VGGFCN,
    create_backbone,
    list_backbones,
    register_backbone,
)
from dcsm_lightning.models.fcn import MultiLabelFCN, global_max_pool, multilabel_loss
from dcsm_lightning.models.finetuning import TwoStageFinetuning

__all__ = [
    "VGGFCN",
    "MultiLabelFCN",
    "TwoStageFinetuning",
    "create_backbone",
    "global_max_pool",
    "list_backbones",
    "multilabel_loss",
    "register_backbone",
]
