"""Class lists that never drift (issue 20): names differing only by case, comma-separated tags,
and data whose class names differ from the checkpoint's, wherever a checkpoint meets data.
Each case runs the installed command in a subprocess."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from robust_helpers import SIZE, error_line, refused, robust_config, run_cli, tag_rows

from dcsm_lightning.app.error_report import EXIT_USER_ERROR
from dcsm_lightning.data.classes import SYNTHETIC_CLASSES


def tagged_config(tmp_path, images, tags, **data):
    """The robust config on a folder of images and a tag CSV (TaggedImagesDataModule)."""
    settings = robust_config(images, tmp_path / "ckpt")
    settings["data"] = {
        "class_path": "dcsm_lightning.data.TaggedImagesDataModule",
        "init_args": {"images": str(images), "tags": str(tags), "size": SIZE, "batch_size": 2,
                      "val_fraction": 0.2, **data},
    }  # fmt: skip
    path = tmp_path / "tagged.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def write_csv(path, rows):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "tags"])
        writer.writerows(rows)
    return path


@pytest.fixture
def val_tags(base_tree, images):
    return tag_rows(base_tree, sorted(p.stem for p in images.glob("*.jpg")))


def test_names_that_differ_only_by_case_are_refused(images, val_tags, tmp_path):
    ids = sorted(val_tags)
    rows = [(i, " ".join(val_tags[i])) for i in ids[1:]] + [(ids[0], "Disc")]
    tags = write_csv(tmp_path / "tags.csv", [*rows, ])
    assert any("disc" in val_tags[i] for i in ids[1:])
    done = run_cli("fit", "--config", str(tagged_config(tmp_path, images, tags)), cwd=tmp_path)
    assert done.returncode == EXIT_USER_ERROR, done.stderr[-3000:]
    assert error_line(done.stderr) == (
        f"the class names in {tags}: 'Disc' and 'disc' differ only in case; use one spelling"
    )
    assert not (tmp_path / "ckpt").exists()


def test_comma_separated_tags_are_separate_classes(images, val_tags, tmp_path):
    tags = write_csv(tmp_path / "tags.csv", [(i, ",".join(n)) for i, n in val_tags.items()])
    assert any("," in ",".join(n) for n in val_tags.values())  # some image has two tags
    done = run_cli("fit", "--config", str(tagged_config(tmp_path, images, tags)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    expected = sorted({name for names in val_tags.values() for name in names})
    assert saved["hyper_parameters"]["class_names"] == expected


RENAMED = ["circle", *SYNTHETIC_CLASSES[1:]]


@pytest.mark.parametrize("subcommand", ["fit", "validate", "compare", "predict", "pseudo-labels"])
def test_data_names_must_match_the_checkpoint(subcommand, tree, config, checkpoint, tmp_path):
    (tree / "class_names.txt").write_text("\n".join(RENAMED) + "\n")
    output = [f"--output_dir={tmp_path / 'out'}"] if subcommand not in ("fit", "validate") else []
    done = run_cli(
        subcommand, "--config", str(config), f"--ckpt_path={checkpoint}", *output,
        f"--trainer.default_root_dir={tmp_path / 'logs'}", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == EXIT_USER_ERROR, done.stderr[-3000:]
    assert error_line(done.stderr) == (
        f"the data's class names differ from checkpoint {checkpoint}'s: 'circle' here, "
        "'disc' there"
    )
    assert not (tmp_path / "out").exists()


def test_data_names_in_another_order_are_refused(tree, config, checkpoint, tmp_path):
    names = list(SYNTHETIC_CLASSES)
    (tree / "class_names.txt").write_text("\n".join(names[1:] + names[:1]) + "\n")
    line = refused("validate", "--config", str(config), f"--ckpt_path={checkpoint}", cwd=tmp_path)
    assert line == f"the data's class names are checkpoint {checkpoint}'s in another order"


def test_tags_are_mapped_to_the_checkpoint_order(base_tree, all_images, checkpoint, tmp_path):
    val_tags = tag_rows(base_tree, sorted(p.stem for p in all_images.glob("*.jpg")))
    assert len({n for names in val_tags.values() for n in names}) == len(SYNTHETIC_CLASSES)
    tags = write_csv(tmp_path / "tags.csv", [(i, " ".join(n)) for i, n in val_tags.items()])
    config = tagged_config(tmp_path, all_images, tags, val_fraction=0.0)
    out = tmp_path / "pseudo"
    done = run_cli(
        "pseudo-labels", "--config", str(config), f"--ckpt_path={checkpoint}",
        f"--output_dir={out}", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    order = list(SYNTHETIC_CLASSES)  # the checkpoint's order (not the sorted tag names)
    seen = set()
    for image_id, names in val_tags.items():
        label = np.asarray(Image.open(out / "SegmentationClass" / f"{image_id}.png"))
        values = set(np.unique(label).tolist())
        allowed = {0, 255} | {order.index(n) + 1 for n in names}
        assert values <= allowed, (image_id, values, allowed)
        seen |= values - {0, 255}
    assert seen  # some foreground: the check above is not vacuous
