"""Configs, checkpoints and devices the command must refuse in one line (issue 20): a YAML list
as config, stacked configs in ``benchmarks/reproduce.py``, non-finite weights, a checkpoint of
another model class, a GPU that is not there, images too small for VGG-16. Each case runs the
installed command (or the script) in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from robust_helpers import cli_env, error_line, refused, robust_config, run_cli

from dcsm_lightning.app.error_report import EXIT_USER_ERROR
from dcsm_lightning.models import SegmentationNet

REPRODUCE = Path(__file__).resolve().parents[2] / "benchmarks" / "reproduce.py"


def test_config_that_is_a_yaml_list(tmp_path):
    listed = tmp_path / "list.yaml"
    listed.write_text("- trainer: {max_epochs: 1}\n- model: {}\n")
    done = run_cli("fit", "--config", str(listed), cwd=tmp_path)
    assert done.returncode == EXIT_USER_ERROR, done.stderr[-3000:]
    assert error_line(done.stderr) == (
        f"config file {listed} must be a mapping of options (key: value), not a list"
    )


def test_reproduce_stacks_its_configs(base_tree, checkpoint, tmp_path):
    settings = robust_config(base_tree, tmp_path / "ckpt")
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"data": settings.pop("data")}))
    model = tmp_path / "model.yaml"
    model.write_text(yaml.safe_dump(settings))
    out = tmp_path / "study"
    done = subprocess.run(
        [sys.executable, str(REPRODUCE), "--config", str(model), "--config", str(data),
         "--ckpt_path", str(checkpoint), "--output_dir", str(out), "--tables", "5",
         "--limit", "2", "--crf_workers", "0"],
        capture_output=True, text=True, timeout=600, env=cli_env(), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "table5.csv").is_file()
    assert f"--config {model} --config {data}" in (out / "REPORT.md").read_text()


def test_checkpoint_with_non_finite_weights(config, checkpoint, tmp_path):
    saved = torch.load(checkpoint, weights_only=True)
    key = next(k for k, v in saved["state_dict"].items() if v.is_floating_point())
    saved["state_dict"][key].view(-1)[0] = float("nan")
    broken = tmp_path / "nan.ckpt"
    torch.save(saved, broken)
    line = refused("validate", "--config", str(config), f"--ckpt_path={broken}", cwd=tmp_path)
    assert line == f"checkpoint {broken} holds NaN or Inf values in {key}"


def _segnet_checkpoint(path: Path, class_names: list[str]) -> Path:
    net = SegmentationNet(len(class_names), class_names, head="largefov", backbone="vgg_small")
    hparams = {**net.hparams, "_class_path": "dcsm_lightning.models.SegmentationNet"}
    torch.save(
        {"state_dict": net.state_dict(), "hyper_parameters": hparams,
         "pytorch-lightning_version": "2.5.0", "epoch": 0, "global_step": 0},
        path,
    )  # fmt: skip
    return path


def test_checkpoint_of_another_model_class(config, checkpoint, tmp_path):
    names = torch.load(checkpoint, weights_only=True)["hyper_parameters"]["class_names"]
    segnet = _segnet_checkpoint(tmp_path / "segnet.ckpt", names)
    line = refused("validate", "--config", str(config), f"--ckpt_path={segnet}", cwd=tmp_path)
    assert line == (
        f"checkpoint {segnet} holds a dcsm_lightning.models.SegmentationNet; this run builds "
        "a dcsm_lightning.models.MultiLabelFCN"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_accelerator_without_a_gpu(config, tmp_path):
    line = refused("validate", "--config", str(config), "--trainer.accelerator=gpu", cwd=tmp_path)
    assert line == "trainer.accelerator 'gpu': no GPU is available on this machine"


def test_images_too_small_for_vgg16(config, tmp_path):
    line = refused("fit", "--config", str(config), "--model.init_args.backbone=vgg16", cwd=tmp_path)
    assert line == (
        "data size 48 is too small for backbone vgg16: fit needs at least 320 px "
        "(224 px after the smallest rescale, 0.7)"
    )
    assert not (tmp_path / "ckpt").exists()
