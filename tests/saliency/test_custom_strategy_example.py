"""``examples/custom_strategy``: installed offline into a temporary folder, then chosen by name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "custom_strategy"
TINY = [
    "--data.init_args.num_train=8",
    "--data.init_args.num_val=8",
    "--data.init_args.batch_size=8",
    "--data.init_args.size=48",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a process that has the example package installed (pip --target)."""
    tmp = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(EXAMPLE, tmp / "source")  # the build writes metadata beside it
    target = tmp / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(target), str(source)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert (target / "dcsm_grad_x_input").is_dir()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), env.get("PYTHONPATH")]))
    return env


def _cli(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dcsm_lightning.app.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_example_strategy_is_chosen_by_its_registry_name_from_yaml(plugin_env, tmp_path):
    run = _cli(
        plugin_env,
        "validate",
        f"--config={ROOT / 'configs' / 'synthetic.yaml'}",
        f"--config={EXAMPLE / 'config.yaml'}",
        *TINY,
        f"--trainer.default_root_dir={tmp_path}",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("grad_x_input", "grad_x_input_soft"):
        assert f"val/miou/{name} " in run.stdout, run.stdout[-3000:]


def test_example_strategy_is_listed_in_the_segmentation_help(plugin_env, tmp_path):
    run = _cli(
        plugin_env, "fit", "--trainer.callbacks.help", "SaliencySegmentation", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "'grad_x_input'" in run.stdout and "dcsm_grad_x_input.GradXInput" in run.stdout
