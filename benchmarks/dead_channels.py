"""Dead ReLU channels of a trained classifier: per layer, the fraction of channels that never
fire (output > 0 nowhere) on any validation image of a built-in dataset.

Usage: ``python benchmarks/dead_channels.py CKPT [--family shapes|glyphs] [--num_val N]``.
Prints one ``layer:fraction`` pair per ReLU (``relu1_1`` ... ``relu7``). ``docs/recipe.md``
uses it: without BatchNorm after fc6 / fc7, a third of their channels died in training.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from dcsm_lightning.data import SyntheticDataModule
from dcsm_lightning.models import MultiLabelFCN


def dead_fractions(model: nn.Module, batches: list[torch.Tensor]) -> dict[str, float]:
    """Fraction in [0, 1] of never-positive channels of each ``relu*`` module of ``model``.

    Args:
        model: any module whose ReLUs are named ``relu...`` (run in eval mode, no gradients).
        batches: float images B x 3 x H x W.
    """
    alive: dict[str, torch.Tensor] = {}

    def record(name: str):  # noqa: ANN202 - a forward hook
        def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
            fired = (output > 0).flatten(2).any(-1).any(0)
            alive[name] = alive[name] | fired if name in alive else fired

        return hook

    handles = [
        module.register_forward_hook(record(name.rsplit(".", 1)[-1]))
        for name, module in model.named_modules()
        if name.rsplit(".", 1)[-1].startswith("relu")
    ]
    try:
        with torch.no_grad():
            for images in batches:
                model(images)
    finally:
        for handle in handles:
            handle.remove()
    return {name: 1.0 - fired.float().mean().item() for name, fired in alive.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", help="a MultiLabelFCN checkpoint")
    parser.add_argument("--family", default="shapes", choices=["shapes", "glyphs"])
    parser.add_argument("--num_val", type=int, default=150)
    args = parser.parse_args()
    model = MultiLabelFCN.load_from_checkpoint(args.ckpt, map_location="cpu").eval()
    data = SyntheticDataModule(num_train=0, num_val=args.num_val, family=args.family)
    data.setup("validate")
    batches = [batch["image"] for batch in data.val_dataloader()]
    fractions = dead_fractions(model.backbone, batches)
    print(" ".join(f"{name}:{value:.2f}" for name, value in fractions.items()))


if __name__ == "__main__":
    main()
