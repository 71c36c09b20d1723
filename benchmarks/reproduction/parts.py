"""The study's model, data and classifiers, built the way the ``dcsm-lightning`` CLI builds them.

- :func:`build_parts`: the config's model and datamodule (LightningCLI, the same keys and
  overrides as ``dcsm-lightning fit --config ...``, e.g. ``--data.init_args.root DIR``).
- :func:`load_weights`: a checkpoint's weights into that model (one-line errors; the CLI's).
- :func:`train_classifier`: ``dcsm-lightning fit`` with a seed, its final weights saved.
- :func:`split_loader`: a fixed subset of a split as batches of the batch contract, and
  :func:`holdout_indices`, the seeded draw (both the package's, as ``tune`` uses them).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch import LightningDataModule, LightningModule

from dcsm_lightning.app.cli import DCSMLightningCLI
from dcsm_lightning.app.cli import main as cli_main
from dcsm_lightning.app.trainer import load_weights
from dcsm_lightning.data.datamodule import SegmentationDataModule
from dcsm_lightning.errors import UserError
from dcsm_lightning.files import atomic_path
from dcsm_lightning.tuning.images import draw_indices as holdout_indices
from dcsm_lightning.tuning.images import split_loader

__all__ = [
    "build_parts",
    "checkpoint_id",
    "holdout_indices",
    "load_weights",
    "split_loader",
    "train_classifier",
]


class _ConfigOnlyCLI(DCSMLightningCLI):
    """The CLI's parser and linking without a subcommand (``run=False``): config -> objects."""

    def before_instantiate_classes(self) -> None:
        """Nothing to adapt: there is no ``predict`` subcommand here."""


def build_parts(
    configs: Sequence[str], overrides: Sequence[str]
) -> tuple[LightningModule, SegmentationDataModule]:
    """The model and datamodule of ``--config C`` for each of ``configs`` (stacked, later ones
    win, as ``dcsm-lightning`` stacks them) plus command-line ``overrides``.

    Raises:
        UserError: the datamodule is not one of the library's (it needs ``dataset(role)``).
        argparse.ArgumentError: a bad config key or value (printed as one line).
    """
    args = [*config_args(configs), *overrides, "--trainer.logger=false"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*args parameter is intended.*")
        cli = _ConfigOnlyCLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            parser_kwargs={"parser_mode": "omegaconf"},
            run=False,
            args=args,
        )
    if not isinstance(cli.datamodule, SegmentationDataModule):
        raise UserError(
            f"{type(cli.datamodule).__name__} is not a dcsm_lightning datamodule",
            "use SyntheticDataModule, VOCDataModule or TaggedImagesDataModule (with masks)",
        )
    return cli.model, cli.datamodule


def checkpoint_id(path: str | os.PathLike) -> str:
    """The checkpoint's absolute path, size and modification time (a retrained file differs)."""
    stat = Path(path).stat()
    return f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def config_args(configs: Sequence[str]) -> list[str]:
    """``["--config", C1, "--config", C2, ...]``."""
    return [arg for config in configs for arg in ("--config", config)]


def train_classifier(
    configs: Sequence[str], overrides: Sequence[str], seed: int, path: Path
) -> Path:
    """Train with ``dcsm-lightning fit --config C ... <overrides> --seed_everything seed``.

    The final weights (no model selection on val) are saved atomically to ``path``; the run's
    own logs and checkpoints go where the config puts them (its logger's folder, else
    ``<path without suffix>/``).
    """
    root = f"--trainer.default_root_dir={path.with_suffix('')}"
    args = ["fit", *config_args(configs), root, *overrides, f"--seed_everything={seed}"]
    cli = cli_main(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        cli.trainer.save_checkpoint(tmp)
    return path
