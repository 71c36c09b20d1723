"""The paper's two training stages as a Lightning ``BaseFinetuning`` callback."""

from __future__ import annotations

from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import BaseFinetuning
from torch.optim import Optimizer


class TwoStageFinetuning(BaseFinetuning):
    """Stage 1 trains only the layers above pool5; from ``unfreeze_at_epoch`` on, all layers.

    The paper (Sec. 4.2) trains fc6, fc7 and the classifier for 30k iterations, then every layer
    for 20k more, at one learning rate. With VOC ``train_aug`` (10,582 images) and batch 2,
    30k iterations are about 6 epochs.

    Args:
        unfreeze_at_epoch: first epoch of stage 2 (0 trains everything from the start).
        module_name: the attribute path of the frozen part of the LightningModule.
        lr_divisor: stage-2 layers get the optimizer's current lr divided by this (paper: 1).
    """

    def __init__(
        self,
        unfreeze_at_epoch: int = 6,
        module_name: str = "backbone.features",
        lr_divisor: float = 1.0,
    ) -> None:
        super().__init__()
        if unfreeze_at_epoch < 0:
            raise ValueError(f"unfreeze_at_epoch must be >= 0, got {unfreeze_at_epoch}")
        if lr_divisor <= 0:
            raise ValueError(f"lr_divisor must be > 0, got {lr_divisor}")
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.module_name = module_name
        self.lr_divisor = lr_divisor

    def _frozen_part(self, pl_module: LightningModule):
        try:
            return pl_module.get_submodule(self.module_name)
        except AttributeError as err:
            raise ValueError(
                f"TwoStageFinetuning.module_name={self.module_name!r} is not a submodule of "
                f"{type(pl_module).__name__}"
            ) from err

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        """Freeze the conv blocks (BatchNorm statistics too) before the optimizer is built."""
        if self.unfreeze_at_epoch > 0:
            self.freeze(self._frozen_part(pl_module), train_bn=False)

    def finetune_function(
        self, pl_module: LightningModule, epoch: int, optimizer: Optimizer
    ) -> None:
        """At ``unfreeze_at_epoch``, unfreeze the blocks and give them a parameter group."""
        if epoch == self.unfreeze_at_epoch and self.unfreeze_at_epoch > 0:
            self.unfreeze_and_add_param_group(
                self._frozen_part(pl_module),
                optimizer,
                initial_denom_lr=self.lr_divisor,
                train_bn=True,
            )
