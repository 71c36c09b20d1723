"""The demo configs (``configs/synthetic.yaml``, ``synthetic_seg.yaml``) as dicts, for the
command-line tests."""

from __future__ import annotations

from pathlib import Path

import yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def checkpoints(config: dict) -> list[dict]:
    """The ModelCheckpoint entries of a config's trainer callbacks."""
    return [
        c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint")
    ]


def demo_config(checkpoint_dir: Path) -> dict:
    """``configs/synthetic.yaml`` with every ModelCheckpoint saving into ``checkpoint_dir``."""
    config = yaml.safe_load((CONFIGS / "synthetic.yaml").read_text())
    for checkpoint in checkpoints(config):
        checkpoint["init_args"]["dirpath"] = str(checkpoint_dir)
    return config


def seg_config(checkpoint_dir: Path) -> dict:
    """``configs/synthetic_seg.yaml`` with its ModelCheckpoint saving into ``checkpoint_dir``."""
    config = yaml.safe_load((CONFIGS / "synthetic_seg.yaml").read_text())
    for checkpoint in checkpoints(config):
        checkpoint["init_args"]["dirpath"] = str(checkpoint_dir)
    return config


#: Command-line options that shrink the demo configs to seconds: tiny data, no logger.
TINY = [
    "--data.init_args.num_train=16",
    "--data.init_args.num_val=8",
    "--data.init_args.batch_size=8",
    "--data.init_args.size=64",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
]
#: Options appended after the README's commands (later options win) that shrink them to
#: seconds: tiny data, two optimizer steps, no progress bar; the config's logger is kept.
SHRINK = [
    "--data.init_args.num_train=16",
    "--data.init_args.num_val=8",
    "--data.init_args.batch_size=8",
    "--data.init_args.size=64",
    "--trainer.max_steps=2",
    "--trainer.enable_progress_bar=false",
]
#: The paper's two strategies only (DCSM, Simonyan), for tests of the commands rather than of
#: the demo's methods: the demo's Captum rows (Integrated Gradients) are the slow ones.
PAPER_STRATEGIES = "--model.segmentation.saliency=[DCSM, Simonyan]"
