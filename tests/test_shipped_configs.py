"""The configs ship inside the package: found by name from any folder, and in the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from dcsm_lightning.app.cli import main
from dcsm_lightning.app.shipped_configs import shipped_configs, with_shipped_configs

ROOT = Path(__file__).resolve().parents[1]


def _repository_configs() -> set[str]:
    folder = ROOT / "configs"
    return {p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml")}


def test_every_repository_config_is_shipped() -> None:
    shipped = shipped_configs()
    assert set(shipped) == _repository_configs()
    assert shipped["synthetic"].read_text() == (ROOT / "configs" / "synthetic.yaml").read_text()


def test_names_resolve_from_an_empty_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    shipped = shipped_configs()
    args = ["fit", "--config", "synthetic", "-c", "configs/data/glyphs.yaml", "--config=voc12"]
    assert with_shipped_configs(args) == [
        "fit", "--config", str(shipped["synthetic"]), "-c", str(shipped["data/glyphs"]),
        f"--config={shipped['voc12']}",
    ]  # fmt: skip
    # a file of the user's wins, and other options are left alone
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "synthetic.yaml").write_text("seed_everything: 1\n")
    args = ["fit", "--config", "configs/synthetic.yaml", "--model", "synthetic"]
    assert with_shipped_configs(args) == args


def test_the_command_reads_a_shipped_config_by_name(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", "--config", "synthetic", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].endswith("MultiLabelFCN")
    assert list(tmp_path.iterdir()) == []  # nothing written where the command ran


def test_the_wheel_holds_configs_license_and_type_marker(tmp_path) -> None:
    # build from a clean copy of the sources: a build/ folder left by an earlier build would
    # put files in the wheel that the project's settings no longer ship
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "src", "configs"):
        if (ROOT / name).is_dir():
            skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=skip)
        else:
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("dcsm_lightning-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"dcsm_lightning/configs/{name}.yaml" for name in _repository_configs()}
    assert expected <= names, expected - names
    assert "dcsm_lightning/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
