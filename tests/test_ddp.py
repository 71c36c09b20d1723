"""fit / compare / predict under Lightning's DDP strategy (2 CPU processes, gloo) vs one process.

9 validation images on 2 processes: a DistributedSampler that pads the shards would count one
image twice and change the metrics; they must match one process exactly.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import yaml
from demo_config import demo_config


def _cli(*args: str, cwd: Path) -> None:
    """Run the CLI in its own run folder (LightningCLI saves config.yaml there)."""
    run_dir = cwd / f"run_{len(list(cwd.glob('run_*')))}"
    args = (*args, f"--trainer.default_root_dir={run_dir}")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    env.pop("MASTER_PORT", None)
    result = subprocess.run(
        [sys.executable, "-m", "dcsm_lightning.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _read(path: Path) -> dict[str, dict[str, float]]:
    rows = csv.DictReader(path.open())
    return {r.pop("method"): {k: float(v) if v else math.nan for k, v in r.items()} for r in rows}


def test_fit_compare_and_predict_under_ddp_match_one_process(tmp_path):
    config = demo_config(tmp_path / "ckpt")
    config["trainer"]["logger"] = False
    config["trainer"]["enable_progress_bar"] = False
    config["trainer"]["max_epochs"] = 1
    config["data"]["init_args"].update(num_train=16, num_val=9, batch_size=4, size=64)
    config["model"]["init_args"]["saliency"] = config["model"]["init_args"]["saliency"][:2]
    (tmp_path / "input.yaml").write_text(yaml.safe_dump(config))
    base = ["--config", "input.yaml", "--trainer.accelerator=cpu"]
    ddp = ["--trainer.strategy=ddp", "--trainer.devices=2"]

    _cli("fit", *base, *ddp, cwd=tmp_path)
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    assert ckpt.is_file()

    _cli("compare", *base, *ddp, f"--ckpt_path={ckpt}", "--output_dir=ddp", cwd=tmp_path)
    _cli(
        "compare",
        *base,
        "--trainer.devices=1",
        f"--ckpt_path={ckpt}",
        "--output_dir=single",
        cwd=tmp_path,
    )
    two, one = (
        _read(tmp_path / "ddp" / "comparison.csv"),
        _read(tmp_path / "single" / "comparison.csv"),
    )
    assert sorted(two) == sorted(one) == ["dcsm", "dcsm+crf", "simonyan", "simonyan+crf"]
    for method in one:
        for column, value in one[method].items():
            other = two[method][column]
            assert (math.isnan(value) and math.isnan(other)) or abs(value - other) < 1e-6, (
                method,
                column,
            )

    _cli("predict", *base, *ddp, f"--ckpt_path={ckpt}", "--output_dir=pred", cwd=tmp_path)
    assert len(list((tmp_path / "pred" / "masks").glob("*.png"))) == 9
    assert len(list((tmp_path / "pred" / "scores").glob("*.json"))) == 9
