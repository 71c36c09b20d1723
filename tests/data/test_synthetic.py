from __future__ import annotations

import numpy as np
import pytest

from dcsm_lightning.data import (
    SYNTHETIC_CLASSES,
    SyntheticScenes,
    VOCDataModule,
    VOCSegmentation,
    export_voc,
    labels_from_mask,
)


def _same(a, b):
    return np.array_equal(a["rgb"], b["rgb"]) and np.array_equal(a["mask"], b["mask"])


def test_same_seed_gives_identical_samples_in_any_order():
    first = SyntheticScenes(12, size=64, seed=3)
    second = SyntheticScenes(500, size=64, seed=3)
    for index in (11, 0, 5):
        a, b = first[index], second[index]
        assert _same(a, b) and a["id"] == b["id"] == f"train_{index:06d}"
        np.testing.assert_array_equal(a["labels"], b["labels"])
    assert _same(first[-1], first[11])


def test_different_seeds_differ():
    assert not _same(SyntheticScenes(1, 64, seed=0)[0], SyntheticScenes(1, 64, seed=1)[0])


def test_splits_are_disjoint_streams():
    digests = {}
    for split in ("train", "val", "test"):
        dataset = SyntheticScenes(60, size=48, seed=0, split=split)
        digests[split] = {dataset[i]["rgb"].tobytes() for i in range(len(dataset))}
        assert len(digests[split]) == 60
    assert not digests["train"] & digests["val"]
    assert not digests["train"] & digests["test"]
    assert not digests["val"] & digests["test"]
    assert SyntheticScenes(1, 48, split="val")[0]["id"] == "val_000000"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"num_images": -1}, "num_images"),
        ({"num_images": 1, "size": 8}, "size"),
        ({"num_images": 1, "seed": -2}, "seed"),
        ({"num_images": 1, "split": "trian"}, "split"),
    ],
)
def test_bad_arguments(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        SyntheticScenes(**kwargs)


def test_index_out_of_range():
    with pytest.raises(IndexError):
        SyntheticScenes(3)[3]


def test_labels_from_mask_ignores_background_and_void():
    mask = np.array([[0, 255, 3], [3, 1, 0]])
    np.testing.assert_array_equal(labels_from_mask(mask, 4), [1, 0, 1, 0])


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "export"
    return export_voc(root, num_train=6, num_val=4, seed=5, size=64)


def test_export_writes_the_voc_layout(export):
    assert (export / "ImageSets" / "Segmentation" / "train.txt").read_text().split() == [
        f"train_{i:06d}" for i in range(6)
    ]
    assert len((export / "ImageSets" / "Segmentation" / "val.txt").read_text().split()) == 4
    assert (export / "class_names.txt").read_text().split() == list(SYNTHETIC_CLASSES)
    assert len(list((export / "JPEGImages").glob("*.jpg"))) == 10
    assert len(list((export / "SegmentationClass").glob("*.png"))) == 10
    assert not list(export.rglob("*.tmp*"))  # no temporary files left behind


@pytest.mark.parametrize(("split", "count"), [("train", 6), ("val", 4)])
def test_export_round_trip_masks_and_labels_exact(export, split, count):
    reference = SyntheticScenes(count, size=64, seed=5, split=split)
    loaded = VOCSegmentation(export, split)  # class names come from class_names.txt
    assert loaded.class_names == SYNTHETIC_CLASSES
    assert len(loaded) == count
    for index in range(count):
        want, got = reference[index], loaded[index]
        assert got["id"] == want["id"]
        np.testing.assert_array_equal(got["mask"], want["mask"])
        np.testing.assert_array_equal(got["labels"], want["labels"])
        mse = ((got["rgb"].astype(float) - want["rgb"]) ** 2).mean()
        assert 10 * np.log10(255**2 / mse) > 33  # JPEG quality 95: PSNR above 33 dB


def test_export_round_trip_through_the_datamodule(export):
    data = VOCDataModule(str(export), size=64, batch_size=4, train_split="train")
    assert data.class_names == list(SYNTHETIC_CLASSES)
    assert data.num_classes == len(SYNTHETIC_CLASSES)
    batch = next(iter(data.val_dataloader()))
    reference = SyntheticScenes(4, size=64, seed=5, split="val")
    np.testing.assert_array_equal(batch["mask"].numpy(), np.stack([s["mask"] for s in reference]))
    np.testing.assert_array_equal(
        batch["labels"].numpy(), np.stack([s["labels"] for s in reference])
    )
    assert batch["valid"].all()


def test_export_refuses_a_non_empty_folder_unless_overwrite(export, tmp_path):
    with pytest.raises(FileExistsError, match="not empty.*overwrite"):
        export_voc(export, 1, 1, seed=5, size=64)
    target = tmp_path / "other"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=str(target)):
        export_voc(target, 1, 1, seed=0, size=48)
    export_voc(target, 2, 1, seed=0, size=48, overwrite=True)
    assert (target / "notes.txt").read_text() == "mine"
    export_voc(target, 2, 1, seed=0, size=48, overwrite=True)  # twice is fine
    assert len(VOCSegmentation(target, "train")) == 2


def test_export_into_a_file_fails(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(NotADirectoryError, match="file"):
        export_voc(path, 1, 1, seed=0)
