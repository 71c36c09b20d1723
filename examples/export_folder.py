"""Export the built-in synthetic scenes as "your own images": a plain folder plus a CSV of tags.

Usage::

    python examples/export_folder.py --out data/own train=800 val=200   # to train on
    python examples/export_folder.py --out data/new test=50             # new images to predict

writes ``OUT/images/<id>.jpg``, ``OUT/<split>.csv`` (``image,tags``) and ``OUT/masks/<id>.png``
(only to measure mIoU; training never reads them). See
:func:`dcsm_lightning.data.export_folder`.
"""

from __future__ import annotations

import argparse

from dcsm_lightning.data import export_folder


def _split(text: str) -> tuple[str, int]:
    name, _, count = text.partition("=")
    if not count.isdigit():
        raise argparse.ArgumentTypeError(f"expected SPLIT=COUNT (e.g. train=800), got {text!r}")
    return name, int(count)


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("splits", nargs="+", type=_split, help="SPLIT=COUNT: train, val or test")
    parser.add_argument("--out", required=True, help="output folder (must be empty or absent)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export")
    ns = parser.parse_args(args)
    try:
        root = export_folder(ns.out, dict(ns.splits), ns.seed, ns.size, ns.overwrite)
    except (OSError, ValueError) as err:
        parser.exit(2, f"export_folder.py: {err}\n")
    counts = ", ".join(f"{count} {name}" for name, count in ns.splits)
    print(f"wrote {counts} images to {root}/images, tags to {root}/<split>.csv")


if __name__ == "__main__":
    main()
