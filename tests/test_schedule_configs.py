"""WarmupCosineLR from YAML: both demo configs (classifier, segmentation network) fit with it,
stepped per batch over the trainer's steps."""

from __future__ import annotations

import pytest
import yaml
from demo_config import TINY, demo_config, seg_config

from dcsm_lightning.app.cli import main

SCHEDULE = {"class_path": "dcsm_lightning.models.WarmupCosineLR", "init_args": {"warmup": 0.1}}


@pytest.mark.parametrize("make_config", [demo_config, seg_config])
def test_demo_configs_fit_with_the_warm_up_cosine_schedule(make_config, tmp_path):
    config = make_config(tmp_path / "ckpt")
    config["model"]["init_args"]["lr_scheduler"] = SCHEDULE
    path = tmp_path / "input.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = main(
        ["fit", "--config", str(path), *TINY, "--trainer.max_epochs=2"]
        + [f"--trainer.default_root_dir={tmp_path / 'run'}", "--trainer.limit_val_batches=0"]
    )
    scheduler_config = cli.trainer.lr_scheduler_configs[0]
    assert scheduler_config.interval == "step"
    assert scheduler_config.scheduler.total_steps == 4  # 16 images / batch 8, two epochs
