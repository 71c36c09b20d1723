"""Checkpoints saved before the model took one ``segmentation`` object (issue 18): their
hyper-parameters hold the segmentation's options as the module's own (``candidates``,
``candidate_threshold``, ``min_candidates``, ``log_panels``, ``segment_in_fit``;
``SegmentationNet``'s ``name``, ``crf_in_fit``), which LightningCLI feeds back as model
arguments on ``--ckpt_path``. They keep working, and keep their values as defaults."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from dcsm_lightning.app.checkpoint_defaults import checkpoint_defaults, migrate_hparams
from dcsm_lightning.app.cli import main
from dcsm_lightning.saliency import DCSM, Simonyan

OLD_CLASSIFIER_KEYS = {
    "candidates": "predicted",
    "candidate_threshold": 0.7,
    "min_candidates": 1,
    "log_panels": False,
    "segment_in_fit": False,
}


def _old_form(checkpoint: Path, path: Path) -> Path:
    """``checkpoint`` with its hyper-parameters as a classifier saved them before issue 18."""
    saved = torch.load(checkpoint, weights_only=True)
    assert "segmentation" not in saved["hyper_parameters"]  # the object is never saved
    saved["hyper_parameters"].update(OLD_CLASSIFIER_KEYS)
    torch.save(saved, path)
    return path


def _without_segmentation(config: Path) -> Path:
    settings = yaml.safe_load(config.read_text())
    del settings["model"]["init_args"]["segmentation"]
    config.write_text(yaml.safe_dump(settings))
    return config


def test_migrate_moves_the_old_keys_under_segmentation():
    hparams = {"_class_path": "dcsm_lightning.models.MultiLabelFCN", "num_classes": 6}
    migrated = migrate_hparams({**hparams, **OLD_CLASSIFIER_KEYS})
    assert migrated == {
        **hparams,
        "segmentation": {
            "class_path": "dcsm_lightning.SaliencySegmentation",
            "init_args": OLD_CLASSIFIER_KEYS,
        },
    }
    segnet = {"num_classes": 3, "name": "student", "crf_in_fit": True, "log_panels": False}
    assert migrate_hparams(segnet)["segmentation"] == {
        "class_path": "dcsm_lightning.NetworkSegmentation",
        "init_args": {"name": "student", "segment_in_fit": True, "log_panels": False},
    }
    assert migrate_hparams(hparams) == hparams  # today's checkpoints are left as they are


def test_checkpoint_defaults_fill_or_drop_a_segmentation():
    fcn, segnet = "dcsm_lightning.models.MultiLabelFCN", "dcsm_lightning.models.SegmentationNet"
    for model_class, expected in ((fcn, "SaliencySegmentation"), (segnet, "NetworkSegmentation")):
        filled = checkpoint_defaults({}, {}, {}, {"segmentation": None}, model_class=model_class)
        assert filled["model"] == {"segmentation": {"class_path": f"dcsm_lightning.{expected}"}}
    # an old checkpoint's options alone (no strategies): validate classifies only, as it did
    legacy = {"class_path": "dcsm_lightning.SaliencySegmentation", "init_args": {"saliency": None}}
    old = checkpoint_defaults(OLD_CLASSIFIER_KEYS, {}, {}, {"segmentation": legacy}, segment=False)
    assert old["model"] == {"segmentation": None}
    for run in (legacy, {**legacy, "init_args": {"saliency": ["dcsm"]}}):
        assert checkpoint_defaults({}, {}, {}, {"segmentation": run}, segment=False)["model"] == {}
        assert checkpoint_defaults({}, {}, {}, {"segmentation": run})["model"] == {}


def test_validate_keeps_the_old_checkpoint_values_under_the_config(config, checkpoint, tmp_path):
    old = _old_form(checkpoint, tmp_path / "old.ckpt")
    cli = main(
        ["validate", "--config", str(config), f"--ckpt_path={old}",
         f"--trainer.default_root_dir={tmp_path}"]
    )  # fmt: skip
    segmentation = cli.model.segmentation
    assert [type(s) for s in segmentation.strategies] == [Simonyan]  # the config's
    rule = segmentation.source.candidates
    assert (rule.threshold, rule.min_candidates) == (0.7, 1)  # the checkpoint's
    assert segmentation.class_names == cli.model.class_names  # found when it attached
    assert "val/miou/simonyan" in cli.trainer.callback_metrics
    # the command line beats the checkpoint
    cli = main(
        ["validate", "--config", str(config), f"--ckpt_path={old}",
         "--model.segmentation.min_candidates=2", f"--trainer.default_root_dir={tmp_path}"]
    )  # fmt: skip
    assert cli.model.segmentation.source.candidates.min_candidates == 2


def test_old_checkpoint_without_strategies_validates_the_classifier_only(
    config, checkpoint, tmp_path
):
    old = _old_form(checkpoint, tmp_path / "old.ckpt")
    config = _without_segmentation(config)
    cli = main(
        ["validate", "--config", str(config), f"--ckpt_path={old}",
         f"--trainer.default_root_dir={tmp_path}"]
    )  # fmt: skip
    assert cli.model.segmentation is None
    assert "val/mAP" in cli.trainer.callback_metrics


def test_predict_with_an_old_checkpoint_alone_uses_dcsm(checkpoint, images, tmp_path):
    old = _old_form(checkpoint, tmp_path / "old.ckpt")
    out = tmp_path / "out"
    cli = main(
        ["predict", f"--ckpt_path={old}", f"--images={images}", f"--output_dir={out}",
         f"--trainer.default_root_dir={tmp_path}"]
    )  # fmt: skip
    segmentation = cli.model.segmentation
    assert [type(s) for s in segmentation.strategies] == [DCSM]
    assert segmentation.source.candidates.threshold == 0.7  # the checkpoint's, kept
    assert len(list((out / "masks").glob("*.png"))) == len(list(images.glob("*.jpg")))
