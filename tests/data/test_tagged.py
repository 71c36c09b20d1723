"""TaggedImagesDataModule on a plain folder + CSV export of the synthetic data, and bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from test_datamodule import check_contract

from dcsm_lightning.data import (
    SYNTHETIC_CLASSES,
    SyntheticScenes,
    TaggedImagesDataModule,
    VOCDataModule,
    export_folder,
    export_voc,
    find_images,
)
from dcsm_lightning.data import tagged as tagged_module

SIZE = 32
SORTED = sorted(SYNTHETIC_CLASSES)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return export_folder(tmp_path_factory.mktemp("own"), {"train": 6, "val": 3}, seed=1, size=SIZE)


@pytest.fixture
def said(monkeypatch):
    """The messages the datamodule reports with rank_zero_info."""
    messages: list[str] = []
    monkeypatch.setattr(tagged_module, "rank_zero_info", messages.append)
    return messages


def _module(root, **kwargs):
    kwargs.setdefault("tags", root / "train.csv")
    kwargs.setdefault("val_tags", root / "val.csv")
    return TaggedImagesDataModule(root / "images", size=SIZE, batch_size=3, **kwargs)


def _reference_labels(split: str, count: int) -> np.ndarray:
    """The scenes' own multi-hot labels, columns reordered to the sorted class names."""
    order = [SYNTHETIC_CLASSES.index(name) for name in SORTED]
    return np.stack(
        [SyntheticScenes(count, SIZE, 1, split)[i]["labels"][order] for i in range(count)]
    )


def test_labels_come_from_the_csv_in_sorted_class_order(export):
    dm = _module(export)
    assert dm.class_names == SORTED and dm.hparams_initial["class_names"] == SORTED
    dm.setup("fit")
    train = dm.dataset("train")
    assert [train[i]["id"] for i in range(len(train))] == [f"train_{i:06d}" for i in range(6)]
    np.testing.assert_array_equal(np.stack(train.labels), _reference_labels("train", 6))
    np.testing.assert_array_equal(np.stack(dm.dataset("val").labels), _reference_labels("val", 3))
    batch = next(iter(dm.val_dataloader()))
    check_contract(batch, 3, SIZE, len(SORTED), with_mask=False)


def test_masks_evaluate_validation_only(export, said):
    dm = _module(export, masks=str(export / "masks"))
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    check_contract(batch, 3, SIZE, len(SORTED), with_mask=True)
    for index in range(3):  # the scenes' masks (PNG, same size: no resampling), sorted ids
        mask = SyntheticScenes(3, SIZE, 1, "val")[index]["mask"]
        for k, name in enumerate(SYNTHETIC_CLASSES):
            sorted_id = SORTED.index(name) + 1
            assert (batch["mask"][index].numpy()[mask == k + 1] == sorted_id).all()
        np.testing.assert_array_equal(batch["mask"][index].numpy()[mask == 0], 0)
        np.testing.assert_array_equal(batch["mask"][index].numpy()[mask == 255], 255)
        labels = batch["labels"][index].numpy()
        present = np.unique(batch["mask"][index].numpy())
        assert sorted(np.flatnonzero(labels) + 1) == [v for v in present if 0 < v < 255]
    assert "mask" not in next(iter(dm.train_dataloader()))
    assert not said


def test_without_masks_validation_says_once_that_miou_needs_them(export, said):
    dm = _module(export)
    dm.setup("fit")
    dm.setup("validate")
    assert len(said) == 1 and "mIoU needs masks" in said[0]


def test_val_fraction_is_a_seeded_disjoint_draw(export):
    def split(seed):
        dm = _module(export, val_tags=None, val_fraction=0.34, seed=seed)
        with pytest.warns(UserWarning, match="3 of 9 images .* have no row"):
            return [set(dm.dataset(s).files) for s in ("train", "val")]

    train, val = split(0)
    assert len(val) == 3 and len(train) == 3 and not train & val
    assert split(0) == [train, val]
    assert any(split(seed)[1] != val for seed in (1, 2, 3))


def test_predict_takes_every_image_tagged_or_not(export):
    dm = _module(export, val_tags=None)
    everything = dm.dataset("predict")  # val images have no row here: predicted anyway
    assert len(everything) == 9
    assert np.stack(everything.labels)[6:].sum() == 0


def test_predict_does_not_need_rows_that_match(export, tmp_path):
    (tmp_path / "new").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "new" / "x.png")
    dm = TaggedImagesDataModule(str(tmp_path / "new"), tags=str(export / "train.csv"), size=SIZE)
    assert dm.dataset("predict").files == ["x.png"]
    with pytest.raises(FileNotFoundError, match=r"6 of 6 rows of .*train.csv name no image"):
        dm.dataset("train")


def test_images_without_rows_are_skipped_for_training_with_a_count(export):
    dm = _module(export, val_tags=None, val_fraction=0.0)
    with pytest.warns(UserWarning, match=r"3 of 9 images .* no row .*: val_000000.jpg"):
        assert len(dm.dataset("train")) == 6
    with pytest.raises(ValueError, match="'val' split .* has no images .*val_fraction > 0"):
        dm.dataset("val")


def _csv(path, rows: str):
    path.write_text("image,tags\n" + rows)
    return path


def test_rows_without_a_file_are_an_error(export, tmp_path):
    tags = _csv(tmp_path / "t.csv", "train_000000.jpg,disc\nghost.jpg,star\nghost2,disc\n")
    dm = _module(export, tags=tags, val_tags=None)
    with pytest.raises(FileNotFoundError, match=r"2 of 3 rows of .*t.csv .*ghost.jpg \(line 3\)"):
        dm.setup("fit")


def test_empty_tag_sets_are_counted(export, tmp_path, said):
    tags = _csv(tmp_path / "t.csv", "train_000000.jpg,disc\ntrain_000001,\ntrain_000002.jpg,\n")
    dm = _module(export, tags=tags, val_tags=None, val_fraction=0.3)
    with pytest.warns(UserWarning, match="no row"):
        dm.setup("fit")
    assert "2 of 3 tagged images have no tags (background only)" in said


def test_an_image_in_both_tag_files_is_an_error(export, tmp_path):
    val = _csv(tmp_path / "v.csv", "train_000004.jpg,disc\n")
    with pytest.raises(ValueError, match=r"1 images are in both .*train_000004.jpg"):
        _module(export, val_tags=val).setup("fit")


def test_bad_class_and_missing_names(export, tmp_path):
    tags = _csv(tmp_path / "t.csv", "train_000000.jpg,disk\n")
    with pytest.raises(ValueError, match=r"t.csv line 2: unknown class 'disk'.*'disc'"):
        _module(export, tags=tags, val_tags=None, class_names=list(SYNTHETIC_CLASSES))
    with pytest.raises(ValueError, match="needs tags .* or class_names"):
        TaggedImagesDataModule(str(export / "images"))


def test_mask_of_another_size_and_missing_masks(export, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    for name in sorted(os.listdir(export / "masks")):
        (masks / name).write_bytes((export / "masks" / name).read_bytes())
    Image.new("L", (SIZE + 1, SIZE)).save(masks / "val_000001.png")
    dm = _module(export, masks=str(masks), class_names=list(SYNTHETIC_CLASSES))
    with pytest.raises(ValueError, match=r"mask .*val_000001.png is 33 x 32 .* is 32 x 32"):
        dm.setup("validate")
    (masks / "val_000001.png").unlink()
    dm = _module(export, masks=str(masks), class_names=list(SYNTHETIC_CLASSES))
    with pytest.raises(FileNotFoundError, match=r"1 of 3 images have no mask .*val_000001.png"):
        dm.setup("validate")


def test_nested_folders_and_cls_labels_npy_ids(tmp_path):
    images = tmp_path / "JPEGImages"
    (images / "sub").mkdir(parents=True)
    (images / ".hidden").mkdir()
    for name in ("sub/a.png", "b.jpg", ".hidden/c.png", "sub/.d.png"):
        Image.new("RGB", (40, 24)).save(images / name)
    (images / "notes.txt").write_text("not an image")
    np.save(tmp_path / "cls_labels.npy", {"sub/a": np.array([1, 0, 1]), "b": np.array([0, 1, 0])})
    dm = TaggedImagesDataModule(
        str(images), str(tmp_path / "cls_labels.npy"), class_names=["x", "y", "z"], size=SIZE
    )
    everything = dm.dataset("predict")
    assert [everything[i]["id"] for i in range(2)] == ["b", "sub/a"]
    np.testing.assert_array_equal(np.stack(everything.labels), [[0, 1, 0], [1, 0, 1]])


def test_bad_file_names(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match="share the id 'a'"):
        find_images(tmp_path)
    (tmp_path / "a.png").unlink()
    os.close(os.open(os.fsencode(tmp_path) + b"/caf\xe9.jpg", os.O_CREAT | os.O_WRONLY))
    with pytest.raises(ValueError, match=r"caf\\xe9.jpg is not valid UTF-8; rename it"):
        find_images(tmp_path)
    with pytest.raises(FileNotFoundError, match="image folder .*nope does not exist"):
        find_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        TaggedImagesDataModule(str(tmp_path / "empty"), class_names=["x"])._files()


def test_train_mask_root_feeds_pseudo_labels_of_nested_ids(tmp_path):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for name in ("sub/a.png", "b.png"):
        Image.new("RGB", (40, 24)).save(images / name)
    (tmp_path / "t.csv").write_text("image,tags\nsub/a.png,x\nb,y\n")
    pseudo = tmp_path / "pseudo" / "SegmentationClass"
    (pseudo / "sub").mkdir(parents=True)
    for value, name in ((1, "sub/a.png"), (2, "b.png")):
        Image.fromarray(np.full((24, 40), value, np.uint8), mode="L").save(pseudo / name)
    dm = TaggedImagesDataModule(
        str(images), str(tmp_path / "t.csv"), val_fraction=0.0, train_mask_root=str(pseudo.parent)
    )
    train = dm.dataset("train")
    assert {train[i]["id"]: int(train[i]["mask"].max()) for i in range(2)} == {"b": 2, "sub/a": 1}
    (pseudo / "sub" / "a.png").unlink()
    dm = TaggedImagesDataModule(
        str(images), str(tmp_path / "t.csv"), val_fraction=0.0, train_mask_root=str(pseudo.parent)
    )
    with pytest.raises(FileNotFoundError, match=r"no mask .*sub/a.png for training image 'sub/a'"):
        dm.dataset("train")


def test_the_csv_export_feeds_the_batches_of_the_voc_export(export, tmp_path):
    """Same images and tags through both paths: with the same class order and seed, fit sees
    identical batches (so the two paths train identically, up to float nondeterminism)."""
    voc = VOCDataModule(
        str(export_voc(tmp_path / "voc", 6, 3, seed=1, size=SIZE)),
        train_split="train",
        size=SIZE,
        batch_size=3,
    )
    own = _module(export, class_names=list(SYNTHETIC_CLASSES))
    for loader in ("train_dataloader", "val_dataloader"):
        batches = []
        for dm in (voc, own):
            torch.manual_seed(0)  # shuffling and random flips
            batches.append(list(getattr(dm, loader)()))
        assert len(batches[0]) == len(batches[1]) > 0
        for a, b in zip(*batches, strict=True):
            assert a["id"] == b["id"]
            for key in ("image", "labels", "valid", "orig_size"):
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
