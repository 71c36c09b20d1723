"""A user's own Lightning project (issue 19's acceptance): torchvision ResNet-18 with a
score-map head trained through average pooling, dict batches ``{img, y, seg, name}``, 3
classes. Run as a script it validates / compares / predicts with
``saliency: [dcsm, gradcam, simonyan]`` by name (no layer given) and writes
``<out>/results.json`` (rank 0), ``<out>/report/comparison.csv`` and ``<out>/pred/``::

    python tests/any_model_project.py --out DIR [--devices 2]   # 2: DDP on gloo (CPU)
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.models import resnet18

CLASSES = ["red", "green", "blue"]
SIZE = 64


class ResNetScoreMap(pl.LightningModule):
    """Their module: ResNet-18 stages, a 1 x 1 conv score-map head, average pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = resnet18(weights=None)
        self.head = nn.Conv2d(512, len(CLASSES), 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(img))))
        return self.head(b.layer4(b.layer3(b.layer2(b.layer1(x)))))  # B x K x h x w

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self(batch["img"]).mean(dim=(2, 3))
        loss = F.binary_cross_entropy_with_logits(logits, batch["y"])
        self.log("val_loss", loss, sync_dist=True)

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return torch.sigmoid(self(batch["img"]).mean(dim=(2, 3)))


class Squares(Dataset):
    """Their data: a coloured square per present class on grey; seg 0 = background."""

    def __init__(self, count: int, seed: int = 0) -> None:
        self.count, self.seed = count, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 1000 + i)
        img = torch.full((3, SIZE, SIZE), -0.5)
        seg = torch.zeros(SIZE, SIZE, dtype=torch.long)
        y = torch.zeros(len(CLASSES))
        for k in torch.randperm(len(CLASSES), generator=g)[: 1 + i % 2].tolist():
            r, c = torch.randint(0, SIZE - 24, (2,), generator=g).tolist()
            img[:, r : r + 24, c : c + 24] = -1.0
            img[k, r : r + 24, c : c + 24] = 1.5
            seg[r : r + 24, c : c + 24] = k + 1
            y[k] = 1.0
        return {"img": img, "y": y, "seg": seg, "name": f"img_{i}"}


def run(out: Path, devices: int = 1, num_val: int = 7) -> tuple[pl.LightningModule, Any]:
    """validate (with the comparison report) and predict; rank 0 writes results.json.

    Returns the model and the ``SaliencySegmentation`` callback."""
    from dcsm_lightning import (
        BatchAdapter,
        ComparisonReport,
        SaliencySegmentation,
        SegmentationWriter,
    )

    pl.seed_everything(0)
    model = ResNetScoreMap()
    val = DataLoader(Squares(num_val), batch_size=2)
    common = {"accelerator": "cpu", "devices": devices, "logger": False,
              "enable_progress_bar": False, "enable_checkpointing": False}  # fmt: skip
    if devices > 1:
        common["strategy"] = "ddp"
    # --- glue: 6 statements ----------------------------------------------------------------
    adapter = BatchAdapter(image="img", labels="y", mask="seg", id="name")
    seg = SaliencySegmentation(["dcsm", "gradcam", "simonyan"], CLASSES, batch_adapter=adapter,
                               pool="avg")  # fmt: skip
    writer = SegmentationWriter(str(out / "pred"), overwrite=True)
    trainer = pl.Trainer(callbacks=[seg, ComparisonReport(str(out / "report")), writer], **common)
    trainer.validate(model, val)
    trainer.predict(model, val, return_predictions=False)
    # --- glue end ---------------------------------------------------------------------------
    if trainer.is_global_zero:
        results = {m: r["miou"] for m, r in seg.results["val"].items()}
        (out / "results.json").write_text(json.dumps(results))
    return model, seg


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--devices", type=int, default=1)
    args = parser.parse_args()
    warnings.simplefilter("default")  # the test reads what is warned
    run(args.out, args.devices)


if __name__ == "__main__":
    main()
