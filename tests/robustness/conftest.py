"""Fixtures of the robustness tests: a tiny VOC-layout tree, a config and a checkpoint."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from robust_helpers import SIZE, robust_config

from dcsm_lightning.app.cli import main
from dcsm_lightning.app.error_report import run_command
from dcsm_lightning.data.synthetic import export_voc

RUN_COMMANDS = ("fit", "validate", "test", "predict", "compare", "pseudo-labels")


@pytest.fixture(scope="session")
def base_tree(tmp_path_factory) -> Path:
    """The synthetic export in the VOC layout: 6 train and 5 val images of 48 px."""
    return export_voc(tmp_path_factory.mktemp("base") / "VOC2012", 6, 5, seed=0, size=SIZE)


@pytest.fixture
def tree(base_tree, tmp_path) -> Path:
    """A private copy of :func:`base_tree` that a test may damage."""
    return Path(shutil.copytree(base_tree, tmp_path / "VOC2012"))


@pytest.fixture
def config(tree, tmp_path) -> Path:
    """``robust.yaml`` on the private tree (checkpoints go to ``tmp_path/ckpt``)."""
    path = tmp_path / "robust.yaml"
    path.write_text(yaml.safe_dump(robust_config(tree, tmp_path / "ckpt")))
    return path


@pytest.fixture(scope="session")
def checkpoint(base_tree, tmp_path_factory) -> Path:
    """A 1-epoch checkpoint of the robust config (6 synthetic classes)."""
    folder = tmp_path_factory.mktemp("trained")
    path = folder / "robust.yaml"
    path.write_text(yaml.safe_dump(robust_config(base_tree, folder / "ckpt")))
    code = run_command(main, ["fit", "--config", str(path), f"--trainer.default_root_dir={folder}"])
    assert code == 0
    return folder / "ckpt" / "last.ckpt"


@pytest.fixture
def run(capsys, tmp_path) -> Callable[..., tuple[int, str]]:
    """Run the command in this process: ``run(*args) -> (exit status, stderr)``; each run gets
    its own ``default_root_dir`` (LightningCLI refuses to overwrite a saved config.yaml)."""

    def _run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        args = list(args)
        if args and args[0] in RUN_COMMANDS:
            args.append(f"--trainer.default_root_dir={tempfile.mkdtemp(dir=tmp_path)}")
        code = run_command(main, args)
        return code, capsys.readouterr().err

    return _run


@pytest.fixture
def images(base_tree, tmp_path) -> Path:
    """A private folder of the 5 validation images of :func:`base_tree` (``<id>.jpg``)."""
    folder = tmp_path / "images"
    folder.mkdir()
    for image_id in (base_tree / "ImageSets" / "Segmentation" / "val.txt").read_text().split():
        shutil.copy(base_tree / "JPEGImages" / f"{image_id}.jpg", folder)
    return folder


@pytest.fixture
def all_images(base_tree, tmp_path) -> Path:
    """A private folder of all 11 images of :func:`base_tree`, which show all 6 classes."""
    return Path(shutil.copytree(base_tree / "JPEGImages", tmp_path / "all_images"))
