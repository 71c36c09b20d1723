"""The ``dcsm-lightning`` command.

LightningCLI's ``fit`` / ``validate`` / ``test`` / ``predict``, plus three shortcuts that add one
of our callbacks after those of the config:

- ``compare``: ``validate`` + :class:`~dcsm_lightning.comparison.ComparisonReport`
  (``--output_dir``, default the run's log directory; ``--include CSV``, repeatable, puts the
  rows of earlier comparisons first, e.g. the classifier's beside a segmentation network's);
- ``predict --output_dir DIR [--overwrite] [--method NAME] [--images DIR]``: ``predict`` +
  :class:`~dcsm_lightning.writer.SegmentationWriter` (masks, heatmaps, overlays, scores);
  ``--images DIR`` predicts every image under DIR with
  :class:`~dcsm_lightning.data.TaggedImagesDataModule` (see
  :func:`~dcsm_lightning.checkpoint_defaults.folder_options`);
- ``pseudo-labels --output_dir DIR [--overwrite] [--method NAME] [--uncertain_threshold T]``:
  ``predict`` on the datamodule's ``train_split``, with the image tags as candidates, and the
  writer in ``pseudo_labels`` mode (VOC ``SegmentationClass`` layout; pixels whose winning
  probability is below T become void 255);

and ``synth``, which exports the built-in dataset in the PASCAL VOC layout.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser

from dcsm_lightning.checkpoint_defaults import checkpoint_defaults, folder_options
from dcsm_lightning.cli_base import BaseCLI
from dcsm_lightning.comparison import ComparisonReport
from dcsm_lightning.errors import run_command
from dcsm_lightning.writer import SegmentationWriter


class DCSMLightningCLI(BaseCLI):
    """LightningCLI whose datamodule's ``num_classes`` and ``class_names`` feed the model.

    Args:
        predict_train_split: predict on the datamodule's ``train_split`` (``"train"`` if it
            has none) unless ``predict_split`` is given (``pseudo-labels``).

    ``predict --ckpt_path`` takes what the run leaves unset from the checkpoint
    (:func:`~dcsm_lightning.checkpoint_defaults.checkpoint_defaults`).
    """

    def __init__(self, *args: Any, predict_train_split: bool = False, **kwargs: Any) -> None:
        self.predict_train_split = predict_train_split
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for field in ("num_classes", "class_names"):
            parser.link_arguments(
                f"data.{field}", f"model.init_args.{field}", apply_on="instantiate"
            )

    def before_instantiate_classes(self) -> None:
        init_args = self.config[self.subcommand].data.get("init_args")
        if self.predict_train_split and init_args is not None:
            if init_args.get("predict_split") is None:
                init_args.predict_split = init_args.get("train_split") or "train"
        config = self.config[self.subcommand]
        ckpt_path = config.get("ckpt_path") if self.subcommand == "predict" else None
        if not ckpt_path or not os.path.isfile(ckpt_path) or config.get("data") is None:
            return
        updates = checkpoint_defaults(
            ckpt_path, vars(config.data.init_args), vars(config.model.init_args)
        )
        updates = {
            key: {"class_path": config[key].class_path, "init_args": values}
            for key, values in updates.items()
            if values
        }
        if updates:
            self.config = self.parser.parse_object({self.subcommand: updates}, self.config)


def _pop_flag(args: list[str], name: str) -> bool:
    """Remove ``name`` from ``args``; return whether it was there."""
    if name in args:
        args.remove(name)
        return True
    return False


def _pop_option(args: list[str], name: str) -> str | None:
    """Remove ``name VALUE`` or ``name=VALUE`` from ``args``; return VALUE (None if absent)."""
    for i, arg in enumerate(args):
        if arg == name:
            if i + 1 >= len(args):
                raise SystemExit(f"{name} needs a value")
            value = args[i + 1]
            del args[i : i + 2]
            return value
        if arg.startswith(name + "="):
            del args[i]
            return arg.split("=", 1)[1]
    return None


def _parse_threshold(value: str | None) -> float | None:
    """``--uncertain_threshold`` as a float (None if absent); the writer checks its range."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise SystemExit(
            f"--uncertain_threshold must be a number in [0, 1], got {value!r}"
        ) from None


def synth_main(args: list[str]) -> None:
    """``dcsm-lightning synth --out DIR --num-train N --num-val M --seed S``."""
    from dcsm_lightning.data.synthetic import export_voc

    parser = argparse.ArgumentParser(
        prog="dcsm-lightning synth",
        description="Export the built-in synthetic scenes in the PASCAL VOC 2012 folder layout.",
    )
    parser.add_argument("--out", required=True, help="output folder (must be empty or absent)")
    parser.add_argument("--num-train", type=int, default=800)
    parser.add_argument("--num-val", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export")
    ns = parser.parse_args(args)
    root = export_voc(
        ns.out, ns.num_train, ns.num_val, ns.seed, size=ns.size, overwrite=ns.overwrite
    )
    print(f"wrote {ns.num_train} train and {ns.num_val} val images to {root}")


def main(args: list[str] | None = None) -> DCSMLightningCLI | None:
    """Entry point of ``dcsm-lightning``; ``args`` defaults to ``sys.argv[1:]``."""
    args = list(sys.argv[1:] if args is None else args)
    command = args[0] if args else None
    if command == "synth":
        synth_main(args[1:])
        return None
    trainer_defaults: dict[str, Any] = {}
    if command == "compare":
        args[0] = "validate"
        output_dir = _pop_option(args, "--output_dir")
        include = []
        while (path := _pop_option(args, "--include")) is not None:
            include.append(path)
        trainer_defaults["callbacks"] = [ComparisonReport(output_dir=output_dir, include=include)]
    elif command in ("predict", "pseudo-labels"):
        output_dir = _pop_option(args, "--output_dir")
        overwrite = _pop_flag(args, "--overwrite")
        method = _pop_option(args, "--method")
        threshold = _pop_option(args, "--uncertain_threshold")
        images = _pop_option(args, "--images")
        if images is not None:
            try:
                args += folder_options(images, args)
            except ValueError as err:
                raise SystemExit(f"dcsm-lightning {command}: {err}") from None
        if command == "pseudo-labels":
            args[0] = "predict"
            if output_dir is None:
                raise SystemExit("dcsm-lightning pseudo-labels needs --output_dir DIR")
            # Training images come with their tags: use them as candidates unless told otherwise.
            option = "--model.init_args.candidates"
            if not any(a.startswith(option) for a in args):
                args.append(f"{option}=labels")
        if output_dir is not None:
            mode = "pseudo_labels" if command == "pseudo-labels" else "predictions"
            try:
                writer = SegmentationWriter(
                    output_dir,
                    mode=mode,
                    overwrite=overwrite,
                    method=method,
                    uncertain_threshold=_parse_threshold(threshold),
                )
            except ValueError as err:  # e.g. a threshold outside [0, 1]
                raise SystemExit(f"dcsm-lightning {command}: {err}") from None
            trainer_defaults["callbacks"] = [writer]
        elif method is not None or threshold is not None:
            raise SystemExit(
                f"dcsm-lightning {command}: --method and --uncertain_threshold need --output_dir"
            )
    with warnings.catch_warnings():
        # LightningCLI warns whenever args is given and sys.argv is not empty, as here.
        warnings.filterwarnings("ignore", message=".*args parameter is intended.*")
        return DCSMLightningCLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            parser_kwargs={"parser_mode": "omegaconf"},
            trainer_defaults=trainer_defaults,
            args=args,
            predict_train_split=command == "pseudo-labels",
        )


def console_main() -> None:
    """Console-script entry: :func:`main` with one-line user errors and an exit status
    (see :mod:`dcsm_lightning.errors`; ``--debug`` or ``DCSM_DEBUG=1`` shows tracebacks)."""
    sys.exit(run_command(main))


if __name__ == "__main__":
    console_main()
