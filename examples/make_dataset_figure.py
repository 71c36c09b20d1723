"""Draw a grid of synthetic scenes and their masks: ``docs/images/synthetic_samples.png``.

Usage::

    python examples/make_dataset_figure.py [--out docs/images/synthetic_samples.png] [--num 8]
    python examples/make_dataset_figure.py --family glyphs --out docs/images/glyphs_samples.png

Top row: the images; bottom row: the masks in VOC colours (black background, cream void
outlines); the legend names each class's colour.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from dcsm_lightning.data import SyntheticScenes  # noqa: E402
from dcsm_lightning.files import atomic_path  # noqa: E402
from dcsm_lightning.palette import colorize_labels, voc_palette  # noqa: E402


def make_figure(
    out: Path, num: int = 8, seed: int = 0, size: int = 96, family: str = "shapes"
) -> Path:
    """Render ``num`` validation scenes of ``family`` and their masks into one PNG at ``out``."""
    dataset = SyntheticScenes(num, size=size, seed=seed, split="val", family=family)
    class_names = dataset.class_names
    fig, axes = plt.subplots(2, num, figsize=(1.6 * num, 3.9), squeeze=False)
    for index in range(num):
        sample = dataset[index]
        names = [class_names[k] for k in sample["labels"].nonzero()[0]]
        axes[0, index].imshow(sample["rgb"], interpolation="nearest")
        axes[0, index].set_title("\n".join(names), fontsize=7)
        axes[1, index].imshow(colorize_labels(sample["mask"]), interpolation="nearest")
        for ax in axes[:, index]:
            ax.set_xticks([])
            ax.set_yticks([])
    palette = voc_palette() / 255.0
    handles = [Patch(color=palette[k + 1], label=name) for k, name in enumerate(class_names)]
    handles.append(Patch(color=palette[255], label="void"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/synthetic_samples.png"))
    parser.add_argument("--num", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--family", choices=["shapes", "glyphs"], default="shapes")
    args = parser.parse_args()
    print(f"wrote {make_figure(args.out, args.num, args.seed, args.size, args.family)}")


if __name__ == "__main__":
    main()
