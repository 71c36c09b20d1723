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
from demo_config import demo_config, seg_config

DDP = ["--trainer.strategy=ddp", "--trainer.devices=2"]


def _cli(*args: str, cwd: Path) -> None:
    """Run the CLI in its own run folder (LightningCLI saves config.yaml there)."""
    run_dir = cwd / f"run_{len(list(cwd.glob('run_*')))}"
    args = (*args, f"--trainer.default_root_dir={run_dir}")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    env.pop("MASTER_PORT", None)
    result = subprocess.run(
        [sys.executable, "-m", "dcsm_lightning.app.cli", *args],
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


def _compare_ddp_and_single(base: list[str], ckpt: Path, cwd: Path, methods: list[str]) -> None:
    """``compare`` on 2 DDP processes and on 1 give the same table (within 1e-6)."""
    for name, devices in (("ddp", DDP), ("single", ["--trainer.devices=1"])):
        _cli("compare", *base, *devices, f"--ckpt_path={ckpt}", f"--output_dir={name}", cwd=cwd)
    two, one = _read(cwd / "ddp" / "comparison.csv"), _read(cwd / "single" / "comparison.csv")
    assert sorted(two) == sorted(one) == sorted(methods)
    for method in one:
        for column, value in one[method].items():
            other = two[method][column]
            assert (math.isnan(value) and math.isnan(other)) or abs(value - other) < 1e-6, (
                method,
                column,
            )


def test_fit_compare_and_predict_under_ddp_match_one_process(tmp_path):
    config = demo_config(tmp_path / "ckpt")
    config["trainer"]["logger"] = False
    config["trainer"]["enable_progress_bar"] = False
    config["trainer"]["max_epochs"] = 1
    config["data"]["init_args"].update(num_train=16, num_val=9, batch_size=4, size=64)
    segmentation = config["model"]["init_args"]["segmentation"]["init_args"]
    segmentation["saliency"] = segmentation["saliency"][:2]
    (tmp_path / "input.yaml").write_text(yaml.safe_dump(config))
    base = ["--config", "input.yaml", "--trainer.accelerator=cpu"]

    _cli("fit", *base, *DDP, cwd=tmp_path)
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    assert ckpt.is_file()

    _compare_ddp_and_single(base, ckpt, tmp_path, ["dcsm", "dcsm+crf", "simonyan", "simonyan+crf"])

    _cli("predict", *base, *DDP, f"--ckpt_path={ckpt}", "--output_dir=pred", cwd=tmp_path)
    assert len(list((tmp_path / "pred" / "masks").glob("*.png"))) == 9
    assert len(list((tmp_path / "pred" / "scores").glob("*.json"))) == 9


def test_segmentation_net_under_ddp_matches_one_process(tmp_path):
    from dcsm_lightning.data import SyntheticScenes
    from dcsm_lightning.files import save_label_png

    scenes = SyntheticScenes(16, 64, 0, "train")  # stand-in pseudo-labels: the true masks
    for sample in scenes:
        save_label_png(tmp_path / "pseudo" / "SegmentationClass" / f"{sample['id']}.png",
                       sample["mask"])  # fmt: skip
    config = seg_config(tmp_path / "ckpt")
    config["trainer"].update(logger=False, enable_progress_bar=False, max_epochs=1)
    config["model"]["init_args"]["dilation"] = 2
    config["data"]["init_args"].update(
        num_train=16, num_val=9, batch_size=4, size=64, train_mask_root="pseudo"
    )
    (tmp_path / "input.yaml").write_text(yaml.safe_dump(config))
    base = ["--config", "input.yaml", "--trainer.accelerator=cpu"]

    _cli("fit", *base, *DDP, cwd=tmp_path)
    _compare_ddp_and_single(
        base, tmp_path / "ckpt" / "last.ckpt", tmp_path, ["segnet", "segnet+crf"]
    )
