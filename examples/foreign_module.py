"""Someone else's Lightning project gets DCSM maps, CRF masks, a comparison table and mask files.

Their project: a torchvision ResNet-18 multi-label classifier (``ResNetTagger``) and tuple
batches ``(image, labels, mask)``. Nothing of theirs changes; the glue between the two
``# --- glue`` markers is 8 lines (target: at most 10):

    python examples/foreign_module.py --out runs/foreign            # ~2 min on 2 CPU cores

Writes ``<out>/report/comparison.{md,csv,png}`` and ``<out>/predictions/{masks,heatmaps,
overlays,scores}/``. The data here come from the built-in synthetic scenes, turned into the
tuples the foreign project uses.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader, TensorDataset

from dcsm_lightning import (
    BatchAdapter,
    ComparisonReport,
    DenseCRF,
    SaliencySegmentation,
    SegmentationWriter,
)
from dcsm_lightning.data import SYNTHETIC_CLASSES, SyntheticDataModule


class ResNetTagger(pl.LightningModule):
    """Their module: ResNet-18, sigmoid cross-entropy, forward gives B x K logits."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.net = torchvision.models.resnet18(weights=None, num_classes=num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        image, labels, _ = batch
        return F.binary_cross_entropy_with_logits(self(image), labels)

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        image, labels, _ = batch
        self.log("val_loss", F.binary_cross_entropy_with_logits(self(image), labels))

    def predict_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        return torch.sigmoid(self(batch[0]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def tuple_loaders(num_train: int, num_val: int, size: int) -> tuple[DataLoader, DataLoader]:
    """Their data: TensorDatasets of (image, labels, mask) tuples."""
    data = SyntheticDataModule(num_train, num_val, size=size, batch_size=max(num_train, num_val))
    data.setup("fit")
    loaders = []
    for loader, shuffle in ((data.train_dataloader(), True), (data.val_dataloader(), False)):
        batch = next(iter(loader))
        dataset = TensorDataset(batch["image"], batch["labels"], batch["mask"])
        loaders.append(DataLoader(dataset, batch_size=16, shuffle=shuffle))
    return loaders[0], loaders[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/foreign"))
    parser.add_argument("--num_train", type=int, default=400)
    parser.add_argument("--num_val", type=int, default=64)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args(argv)
    pl.seed_everything(0)
    train, val = tuple_loaders(args.num_train, args.num_val, args.size)
    model = ResNetTagger(len(SYNTHETIC_CLASSES))
    common = {"accelerator": "cpu", "logger": False, "enable_checkpointing": False}
    pl.Trainer(max_epochs=args.epochs, **common).fit(model, train, val)

    # --- glue: 8 lines ------------------------------------------------------------------------
    adapter = BatchAdapter(image=0, labels=1, mask=2)  # rgb, ids, sizes: the defaults
    # dcsm reads the ResNet's stage outputs (net.layer2 ... net.layer4) by default
    seg = SaliencySegmentation(["dcsm", "simonyan"], SYNTHETIC_CLASSES, batch_adapter=adapter)
    report = ComparisonReport(str(args.out / "report"))
    writer = SegmentationWriter(str(args.out / "predictions"), overwrite=True)
    trainer = pl.Trainer(callbacks=[seg, DenseCRF(), report, writer], **common)
    trainer.validate(model, val)  # prints the table; seg.results holds it as data
    trainer.predict(model, val, return_predictions=False)
    print(f"dcsm+crf mIoU {seg.results['val']['dcsm+crf']['miou']:.3f}")
    # --- glue end -----------------------------------------------------------------------------


if __name__ == "__main__":
    main()
