"""The real-data path: ``configs/voc12.yaml`` with a VGG-16 weights file on disk, on a tree in
the VOC layout with VOC's 20 classes (no ``class_names.txt``): fit, compare, pseudo-labels on
``train_aug`` and predict, at the smallest size VGG-16's 7 x 7 fc6 takes (224)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from demo_config import CONFIGS
from PIL import Image

from dcsm_lightning.app.cli import main
from dcsm_lightning.data.synthetic import export_voc
from dcsm_lightning.data.voc import VOC_CLASSES

LIMITS = [
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.limit_predict_batches=2",
    "--trainer.max_epochs=1",
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.enable_progress_bar=false",
    "--model.segmentation.saliency=dcsm_lightning.saliency.Simonyan",  # the cheapest maps
    "--model.init_args.scale_range=[1.0, 1.0]",  # 0.7 x 224 is too small for a 7 x 7 fc6
    # an untrained model scores ~0.5 for all 20 classes: one candidate, one backward pass
    "--model.segmentation.candidate_threshold=1.0",
    "--model.segmentation.min_candidates=1",
]


@pytest.fixture(scope="session")
def vgg16_weights(tmp_path_factory) -> Path:
    """torchvision's ``vgg16(weights=None)`` state dict on disk (528 MB), made once."""
    from torchvision.models import vgg16

    path = tmp_path_factory.mktemp("weights") / "vgg16-397923af.pth"
    torch.save(vgg16(weights=None).state_dict(), path)
    return path


@pytest.fixture
def voc_tree(tmp_path) -> Path:
    """VOCdevkit/VOC2012 with train_aug and val lists and no class_names.txt (masks use
    ids 1-6 of VOC's 20 classes)."""
    root = export_voc(tmp_path / "VOCdevkit" / "VOC2012", 4, 3, seed=0, size=64)
    (root / "class_names.txt").unlink()
    lists = root / "ImageSets" / "Segmentation"
    (lists / "train_aug.txt").write_text((lists / "train.txt").read_text())
    (lists / "train.txt").write_text("")  # labelling train instead of train_aug would fail
    return root.parent


def _config(tmp_path: Path, voc_tree: Path) -> Path:
    config = yaml.safe_load((CONFIGS / "voc12.yaml").read_text())
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    callbacks = config["trainer"]["callbacks"]
    for callback in [c for c in callbacks if c["class_path"].endswith("ModelCheckpoint")]:
        if callback["init_args"]["filename"] == "best":
            callbacks.remove(callback)  # one 528 MB file is enough here
        callback["init_args"].update(dirpath=str(tmp_path / "ckpt"), save_weights_only=True)
    config["data"]["init_args"].update(root=str(voc_tree), size=224, batch_size=1, num_workers=0)
    path = tmp_path / "voc12.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_voc12_config_runs_fit_compare_pseudo_labels_and_predict(tmp_path, voc_tree, vgg16_weights):
    config = _config(tmp_path, voc_tree)
    base = ["--config", str(config), *LIMITS]
    cli = main(["fit", *base, f"--model.init_args.pretrained={vgg16_weights}"])
    assert cli.model.class_names == list(VOC_CLASSES)
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    assert ckpt.is_file()

    with_ckpt = [*base, f"--ckpt_path={ckpt}"]
    main(["compare", *with_ckpt, f"--output_dir={tmp_path / 'compare'}"])
    rows = list(csv.DictReader((tmp_path / "compare" / "comparison.csv").open()))
    assert {r["method"] for r in rows} == {"simonyan", "simonyan+crf"}

    pseudo = tmp_path / "pseudo"
    main(["pseudo-labels", *with_ckpt, f"--output_dir={pseudo}"])
    voc = voc_tree / "VOC2012"
    train_aug = (voc / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split()
    labelled = sorted(p.stem for p in (pseudo / "SegmentationClass").glob("*.png"))
    assert labelled == sorted(train_aug[:2])  # limit_predict_batches=2, batch 1
    for image_id in labelled:
        tags = np.asarray(Image.open(voc / "SegmentationClass" / f"{image_id}.png"))
        label = np.asarray(Image.open(pseudo / "SegmentationClass" / f"{image_id}.png"))
        assert set(np.unique(label).tolist()) <= set(np.unique(tags).tolist()) | {0, 255}

    main(["predict", *with_ckpt, f"--output_dir={tmp_path / 'pred'}"])
    scores = sorted((tmp_path / "pred" / "scores").glob("*.json"))
    assert len(scores) == 2
    assert len(list((tmp_path / "pred" / "masks").glob("*.png"))) == 2
