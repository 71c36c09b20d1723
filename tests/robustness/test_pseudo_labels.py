"""``pseudo-labels`` labels the datamodule's ``train_split`` with the image tags as candidates,
and every option given (command line or config file) beats the checkpoint's hyper-parameters."""

from __future__ import annotations

import numpy as np
import yaml
from PIL import Image

from dcsm_lightning.app.cli import main


def test_pseudo_labels_use_the_tags_the_options_and_the_train_split(
    tree, config, checkpoint, tmp_path
):
    train = (tree / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    chosen = train[1:4]
    (tree / "ImageSets" / "Segmentation" / "mine.txt").write_text("\n".join(chosen) + "\n")
    untagged = chosen[0]  # an image with an empty tag set: all background
    mask_path = tree / "SegmentationClass" / f"{untagged}.png"
    with Image.open(mask_path) as mask:
        empty = Image.fromarray(np.zeros_like(np.asarray(mask)))
        empty.putpalette(mask.getpalette())
    empty.save(mask_path)
    settings = yaml.safe_load(config.read_text())
    segmentation = settings["model"]["init_args"]["segmentation"]["init_args"]
    segmentation["candidate_threshold"] = 0.7  # the config file beats the checkpoint
    config.write_text(yaml.safe_dump(settings))

    cli = main(
        [
            "pseudo-labels",
            "--config",
            str(config),
            f"--ckpt_path={checkpoint}",
            f"--output_dir={tmp_path / 'pseudo'}",
            "--data.init_args.train_split=mine",
            "--model.segmentation.min_candidates=1",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )

    rule = cli.model.segmentation.source.candidates
    assert (rule.threshold, rule.min_candidates) == (0.7, 1)
    assert rule.source == "labels"  # set by pseudo-labels
    written = sorted(p.stem for p in (tmp_path / "pseudo" / "SegmentationClass").glob("*.png"))
    assert written == sorted(chosen)
    for image_id in chosen:
        tags = np.asarray(Image.open(tree / "SegmentationClass" / f"{image_id}.png"))
        allowed = set(np.unique(tags).tolist()) | {0, 255}
        pseudo = np.asarray(
            Image.open(tmp_path / "pseudo" / "SegmentationClass" / f"{image_id}.png")
        )
        assert set(np.unique(pseudo).tolist()) <= allowed, image_id
    untagged_label = np.asarray(
        Image.open(tmp_path / "pseudo" / "SegmentationClass" / f"{untagged}.png")
    )
    assert set(np.unique(untagged_label).tolist()) <= {0, 255}
