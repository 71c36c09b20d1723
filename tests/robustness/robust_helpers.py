"""Helpers of the robustness tests: a fast config, and running the command (in a subprocess,
as a user does) and reading its one-line error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dcsm_lightning.app.error_report import PROG

SIZE = 48


def robust_config(root: Path, ckpt_dir: Path, crf_workers: int = 0) -> dict:
    """A fast config on a VOC-layout tree: vgg_small, Simonyan maps, a 2-iteration CRF."""
    return {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": 1,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(ckpt_dir.parent),  # LightningCLI saves config.yaml here
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": str(ckpt_dir), "filename": "last"},
                },
                {
                    "class_path": "dcsm_lightning.crf.DenseCRF",
                    "init_args": {
                        "settings": {"iterations": 2},
                        "num_workers": crf_workers,
                        # worker processes are pydensecrf's (the tests count them)
                        **({"backend": "pydensecrf"} if crf_workers else {}),
                    },
                },
            ],
        },
        "model": {
            "class_path": "dcsm_lightning.models.MultiLabelFCN",
            "init_args": {
                "backbone": "vgg_small",
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}},
                "segmentation": {
                    "class_path": "dcsm_lightning.SaliencySegmentation",
                    "init_args": {
                        "saliency": [{"class_path": "dcsm_lightning.saliency.Simonyan"}],
                        "log_panels": False,
                    },
                },
            },
        },
        "data": {
            "class_path": "dcsm_lightning.data.VOCDataModule",
            "init_args": {
                "root": str(root),
                "size": SIZE,
                "batch_size": 2,
                "train_split": "train",
            },
        },
    }


def error_line(stderr: str) -> str:
    """The one error line of a failed command; fails on a traceback or several error lines."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith(f"{PROG}: error: ")]
    assert len(lines) == 1, stderr[-3000:]
    hints = [line for line in stderr.splitlines() if line.startswith("hint: ")]
    assert len(hints) <= 1, stderr[-3000:]
    return lines[0][len(f"{PROG}: error: ") :]


def cli_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    env.pop("DCSM_DEBUG", None)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dcsm_lightning.app.cli", *args]


def run_cli(*args: str, cwd: Path, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run ``dcsm-lightning ARGS`` in a subprocess (as a user does); capture its output."""
    return subprocess.run(
        cli_command(*args),
        cwd=cwd,
        env=kwargs.pop("env", cli_env()),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def leftover_temp_files(folder: Path) -> list[Path]:
    """Hidden temporary files (``.<name>.<host>-<pid>-<hex>.tmp<suffix>``) under ``folder``."""
    return sorted(p for p in folder.rglob(".*.tmp*") if p.is_file())


def tag_rows(tree: Path, ids: list[str]) -> dict[str, list[str]]:
    """``{id: [class name, ...]}`` of VOC-layout images, read from their masks."""
    import numpy as np
    from PIL import Image

    names = (tree / "class_names.txt").read_text().split()
    rows = {}
    for image_id in ids:
        mask = np.asarray(Image.open(tree / "SegmentationClass" / f"{image_id}.png"))
        rows[image_id] = [n for k, n in enumerate(names, start=1) if (mask == k).any()]
    return rows


def refused(*args: str, cwd: Path) -> str:
    """Run ``dcsm-lightning ARGS --trainer.default_root_dir=CWD`` in ``cwd``; assert it exits 1
    with one error line, and return that line."""
    from dcsm_lightning.app.error_report import EXIT_USER_ERROR

    done = run_cli(*args, f"--trainer.default_root_dir={cwd}", cwd=cwd)
    assert done.returncode == EXIT_USER_ERROR, done.stderr[-3000:]
    return error_line(done.stderr)
