"""Bad data on disk, as ``validate`` meets it: one line naming the file, exit 1."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from robust_helpers import error_line

from dcsm_lightning.app.error_report import EXIT_USER_ERROR
from dcsm_lightning.data import VOCDataModule
from dcsm_lightning.data.classes import VOC_CLASSES
from dcsm_lightning.data.transforms import load_rgb
from dcsm_lightning.files import save_label_png


def _first(tree, split: str = "val") -> str:
    return (tree / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()[0]


def _fails(run, config, *extra: str) -> str:
    code, err = run("validate", "--config", str(config), *extra)
    assert code == EXIT_USER_ERROR, err[-3000:]
    return error_line(err)


def test_corrupt_image(run, config, tree):
    image = tree / "JPEGImages" / f"{_first(tree)}.jpg"
    image.write_bytes(b"not a jpeg at all" * 10)
    assert _fails(run, config).startswith(f"cannot read image {image}: corrupt, truncated")


def test_truncated_image(run, config, tree):
    image = tree / "JPEGImages" / f"{_first(tree)}.jpg"
    image.write_bytes(image.read_bytes()[:300])
    assert _fails(run, config).startswith(f"cannot read image {image}: corrupt, truncated")


def test_corrupt_image_in_a_dataloader_worker(run, config, tree):
    image = tree / "JPEGImages" / f"{_first(tree)}.jpg"
    image.write_bytes(b"garbage")
    line = _fails(run, config, "--data.init_args.num_workers=1")
    assert line.startswith(f"cannot read image {image}: corrupt, truncated")


def test_image_over_the_pixel_limit_is_not_called_corrupt(run, config, tree, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 48 x 48 is over twice that
    line = _fails(run, config)
    assert "larger than Pillow's limit of 100 pixels" in line
    assert "corrupt" not in line


def test_missing_image(run, config, tree):
    (tree / "JPEGImages" / f"{_first(tree)}.jpg").unlink()
    assert f"have no image in {tree / 'JPEGImages'}" in _fails(run, config)


def test_missing_split_list_names_the_available_ones(run, config):
    line = _fails(run, config, "--data.init_args.val_split=nope")
    assert line.endswith("nope.txt does not exist (available splits: train, val).")


def test_missing_root(run, config, tmp_path):
    line = _fails(run, config, f"--data.init_args.root={tmp_path / 'nowhere'}")
    assert line == f"VOC data not found: {tmp_path / 'nowhere'} does not exist."


def test_empty_split_list(run, config, tree):
    (tree / "ImageSets" / "Segmentation" / "val.txt").write_text("\n")
    assert _fails(run, config).endswith("val.txt lists no image ids")


def test_duplicated_id_is_named_with_its_list(run, config, tree):
    listed = tree / "ImageSets" / "Segmentation" / "val.txt"
    listed.write_text(listed.read_text() + _first(tree) + "\n")
    line = _fails(run, config)
    assert (
        line
        == f"split list {listed} lists {_first(tree)} more than once; remove the repeated lines"
    )


def test_colour_mask(run, config, tree):
    mask = tree / "SegmentationClass" / f"{_first(tree)}.png"
    Image.open(mask).convert("RGB").save(mask)
    assert f"mask {mask} has mode 'RGB'" in _fails(run, config)


def test_mask_of_another_size(run, config, tree):
    mask = tree / "SegmentationClass" / f"{_first(tree)}.png"
    save_label_png(mask, np.zeros((10, 12), dtype=np.uint8), overwrite=True)
    assert _fails(run, config).startswith(f"mask {mask} is 12 x 10 (W x H) but image")


def test_mask_value_outside_the_classes(run, config, tree):
    mask = tree / "SegmentationClass" / f"{_first(tree)}.png"
    save_label_png(mask, np.full((48, 48), 9, dtype=np.uint8), overwrite=True)
    assert _fails(run, config).startswith(f"mask {mask} has values [9] outside 0..6 and 255")


def test_checkpoint_of_another_number_of_classes(run, config, tree, checkpoint):
    (tree / "class_names.txt").unlink()  # VOC's 20 classes; the checkpoint has 6
    line = _fails(run, config, f"--ckpt_path={checkpoint}")
    assert line.startswith(f"checkpoint {checkpoint} does not fit this model: backbone.score.")
    assert line.endswith("(the data has 20 classes)")


def test_16_bit_image_is_scaled_not_white(run, config, tree, tmp_path):
    rgb = load_rgb(tree / "JPEGImages" / f"{_first(tree)}.jpg")
    gray8 = np.asarray(Image.fromarray(rgb).convert("L"))
    path = tmp_path / "deep.png"
    Image.fromarray(gray8.astype(np.uint16) * 257).save(path)
    assert Image.open(path).mode == "I;16"
    with pytest.warns(UserWarning, match="'I;16' image"):
        loaded = load_rgb(path)
    assert loaded.dtype == np.uint8 and loaded.shape == (*gray8.shape, 3)
    np.testing.assert_array_equal(loaded[..., 0], gray8)
    # and the command reads a tree holding one
    path.replace(tree / "JPEGImages" / f"{_first(tree)}.png")
    (tree / "JPEGImages" / f"{_first(tree)}.jpg").unlink()
    assert run("validate", "--config", str(config))[0] == 0


def test_voc_datamodule_records_the_class_names_it_uses(tmp_path):
    data = VOCDataModule(str(tmp_path))
    assert data.hparams_initial["class_names"] == list(VOC_CLASSES)
