"""mIoU of predicted masks against reference masks, matched by relative path.

Usage::

    python examples/score_masks.py PRED_DIR TRUE_DIR --num_classes K

Both folders hold index PNGs (0 background, 1..K classes, 255 void) under the same relative
paths; every reference mask needs a prediction. IoU per class comes from one confusion matrix
over all images (:class:`dcsm_lightning.metrics.SegmentationIoU`); prints the mIoU and the
number of masks scored.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dcsm_lightning.data import load_label_map
from dcsm_lightning.metrics import SegmentationIoU


def score(pred_dir: Path, true_dir: Path, num_classes: int) -> tuple[float, int]:
    """(mIoU in [0, 1], number of masks) of the predictions in ``pred_dir``."""
    truths = sorted(true_dir.rglob("*.png"))
    if not truths:
        raise SystemExit(f"no reference masks (*.png) under {true_dir}")
    missing = [
        str(p.relative_to(true_dir))
        for p in truths
        if not (pred_dir / p.relative_to(true_dir)).is_file()
    ]
    if missing:
        raise SystemExit(f"{len(missing)} masks have no prediction in {pred_dir}: {missing[:5]}")
    metric = SegmentationIoU(num_classes + 1)
    for truth in truths:
        pred = load_label_map(pred_dir / truth.relative_to(true_dir))
        metric.update(torch.from_numpy(pred), torch.from_numpy(load_label_map(truth)))
    return float(metric.compute()), len(truths)


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pred_dir", type=Path)
    parser.add_argument("true_dir", type=Path)
    parser.add_argument("--num_classes", type=int, required=True, help="K, foreground classes")
    ns = parser.parse_args(args)
    miou, count = score(ns.pred_dir, ns.true_dir, ns.num_classes)
    print(f"mIoU {100 * miou:.1f} % over {count} masks")


if __name__ == "__main__":
    main()
