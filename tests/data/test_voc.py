from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from dcsm_lightning.data import VOC_CLASSES, VOCSegmentation, load_label_map, resolve_voc_root


def _mask(height, width, values=(0, 1, 255), seed=0):
    return np.random.default_rng(seed).choice(values, (height, width))


def test_reads_images_masks_and_derives_labels(voc_tree):
    mask = np.zeros((20, 30), dtype=np.int64)
    mask[2:6, 3:9] = 15  # person
    mask[10:12] = 255
    root = voc_tree(
        images={"a": (20, 30)}, splits={"val": ["a"]}, masks={"SegmentationClass": {"a": mask}}
    )
    dataset = VOCSegmentation(root, "val")
    assert dataset.class_names == VOC_CLASSES and dataset.num_classes == 20 and dataset.has_masks
    sample = dataset[0]
    assert sample["id"] == "a" and sample["rgb"].shape == (20, 30, 3)
    np.testing.assert_array_equal(sample["mask"], mask)
    assert sample["mask"].dtype == np.int64
    expected = np.zeros(20, dtype=np.float32)
    expected[14] = 1
    np.testing.assert_array_equal(sample["labels"], expected)
    np.testing.assert_array_equal(
        sample["rgb"], np.asarray(Image.open(root / "JPEGImages" / "a.png"))
    )


def test_size_letterboxes_samples(voc_tree):
    root = voc_tree(
        images={"a": (20, 40)},
        splits={"val": ["a"]},
        masks={"SegmentationClass": {"a": _mask(20, 40)}},
    )
    sample = VOCSegmentation(root, "val", size=16)[0]
    assert sample["rgb"].shape == (16, 16, 3) and sample["mask"].shape == (16, 16)
    assert sample["valid"][:8].all() and not sample["valid"][8:].any()
    assert (sample["mask"][8:] == 255).all()
    assert tuple(sample["orig_size"]) == (20, 40)


def test_sbd_train_aug_prefers_segmentation_class_aug(voc_tree):
    aug = {i: np.full((8, 8), 2) for i in ("a", "b", "c")}
    root = voc_tree(
        images={i: (8, 8) for i in ("a", "b", "c")},
        splits={"val": ["c"]},
        masks={"SegmentationClassAug": aug, "SegmentationClass": {"c": np.full((8, 8), 5)}},
    )
    # DeepLab-style pair list, as many WSSS repositories ship train_aug.txt
    (root / "ImageSets" / "Segmentation" / "train_aug.txt").write_text(
        "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ("a", "b", "c"))
    )
    train = VOCSegmentation(root, "train_aug")
    assert train.ids == ["a", "b", "c"]
    assert [int(train[i]["mask"][0, 0]) for i in range(3)] == [2, 2, 2]
    assert int(VOCSegmentation(root, "val")[0]["mask"][0, 0]) == 5  # val: SegmentationClass first


def test_train_aug_falls_back_to_segmentation_class(voc_tree):
    root = voc_tree(
        images={"a": (8, 8), "b": (8, 8)},
        splits={"train_aug": ["a", "b"]},
        masks={
            "SegmentationClassAug": {"a": np.full((8, 8), 1)},
            "SegmentationClass": {"b": np.full((8, 8), 3)},
        },
    )
    dataset = VOCSegmentation(root, "train_aug")
    assert [int(dataset[i]["mask"][0, 0]) for i in range(2)] == [1, 3]


def test_vocdevkit_root_is_accepted(tmp_path, voc_tree):
    voc_tree(
        name="VOCdevkit/VOC2012",
        images={"a": (8, 8)},
        splits={"val": ["a"]},
        masks={"SegmentationClass": {"a": np.ones((8, 8), int)}},
    )
    devkit = tmp_path / "VOCdevkit"
    assert resolve_voc_root(devkit) == devkit / "VOC2012"
    dataset = VOCSegmentation(devkit, "val")
    assert dataset.root == devkit / "VOC2012" and len(dataset) == 1


def test_missing_root_is_one_clear_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        VOCSegmentation(missing, "val")
    message = str(info.value)
    assert str(missing) in message
    for hint in ("never downloads", "JPEGImages", "SegmentationClassAug", "VOCtrainval", "synth"):
        assert hint in message


def test_missing_image_folder(tmp_path):
    (tmp_path / "VOC2012").mkdir()
    with pytest.raises(FileNotFoundError, match="JPEGImages does not exist"):
        VOCSegmentation(tmp_path / "VOC2012", "val")


def test_missing_split_lists_available_splits(voc_tree):
    root = voc_tree(images={"a": (8, 8)}, splits={"train": ["a"], "val": ["a"]})
    with pytest.raises(FileNotFoundError, match=r"train_aug.txt.*available splits: train, val"):
        VOCSegmentation(root, "train_aug")


def test_listed_ids_without_images_are_reported_upfront(voc_tree):
    ids = ["a"] + [f"gone{i}" for i in range(7)]
    root = voc_tree(images={"a": (8, 8)}, splits={"val": ids})
    with pytest.raises(FileNotFoundError) as info:
        VOCSegmentation(root, "val")
    message = str(info.value)
    assert "7 of 8 ids" in message and "val.txt" in message and "JPEGImages" in message
    assert "gone0, gone1, gone2, gone3, gone4 and 2 more" in message


def test_partially_missing_masks_are_an_error(voc_tree):
    root = voc_tree(
        images={"a": (8, 8), "b": (8, 8)},
        splits={"val": ["a", "b"]},
        masks={"SegmentationClass": {"a": np.zeros((8, 8), int)}},
    )
    with pytest.raises(FileNotFoundError, match=r"1 of 2 ids .* no mask .*: b"):
        VOCSegmentation(root, "val")


def test_split_without_any_mask_yields_unlabelled_samples(voc_tree):
    root = voc_tree(images={"a": (8, 8)}, splits={"test": ["a"]})
    with pytest.warns(UserWarning, match="no masks for split 'test'"):
        dataset = VOCSegmentation(root, "test")
    assert not dataset.has_masks
    sample = dataset[0]
    assert "mask" not in sample
    np.testing.assert_array_equal(sample["labels"], np.zeros(20, dtype=np.float32))


def test_with_masks_false_skips_masks(voc_tree):
    root = voc_tree(
        images={"a": (8, 8)},
        splits={"val": ["a"]},
        masks={"SegmentationClass": {"a": np.ones((8, 8), int)}},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample = VOCSegmentation(root, "val", with_masks=False)[0]
    assert "mask" not in sample and not sample["labels"].any()


def test_mask_size_mismatch_names_both_files(voc_tree):
    root = voc_tree(
        images={"a": (8, 10)},
        splits={"val": ["a"]},
        masks={"SegmentationClass": {"a": np.zeros((8, 9), int)}},
    )
    dataset = VOCSegmentation(root, "val")
    with pytest.raises(
        ValueError, match=r"SegmentationClass/a.png is 9 x 8.*JPEGImages/a.png is 10 x 8"
    ):
        dataset[0]


def test_mask_values_beyond_the_classes_name_the_file(voc_tree):
    root = voc_tree(
        images={"a": (4, 4)},
        splits={"val": ["a"]},
        masks={"SegmentationClass": {"a": np.array([[0, 1, 3, 255]] * 4)}},
    )
    assert VOCSegmentation(root, "val", class_names=["x", "y", "z"])[0]["labels"].tolist() == [
        1,
        0,
        1,
    ]
    with pytest.raises(ValueError, match=r"a.png has values \[3\] outside 0..2"):
        VOCSegmentation(root, "val", class_names=["x", "y"])[0]


def test_colour_masks_are_rejected(voc_tree, tmp_path):
    path = tmp_path / "rgb_mask.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    with pytest.raises(ValueError, match="rgb_mask.png has mode 'RGB'"):
        load_label_map(path)


def test_corrupt_image_names_the_file(voc_tree):
    root = voc_tree(
        images={"a": (8, 8)},
        splits={"val": ["a"]},
        masks={"SegmentationClass": {"a": np.zeros((8, 8), int)}},
    )
    (root / "JPEGImages" / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="JPEGImages/a.png"):
        VOCSegmentation(root, "val")[0]


def test_invalid_class_names_name_the_field(voc_tree):
    root = voc_tree(images={"a": (8, 8)}, splits={"val": ["a"]})
    with pytest.raises(ValueError, match="class_names"):
        VOCSegmentation(root, "val", class_names=["cat", "cat"])
    (root / "class_names.txt").write_text("cat\nbackground\n")
    with pytest.raises(ValueError, match=r"class_names.txt\[1\]"):
        VOCSegmentation(root, "val")


def test_class_names_file_is_used_and_overrides_warn(voc_tree):
    root = voc_tree(
        images={"a": (8, 8)},
        splits={"val": ["a"]},
        masks={"SegmentationClass": {"a": np.full((8, 8), 2)}},
    )
    (root / "class_names.txt").write_text("cat\ndog\n\n")
    dataset = VOCSegmentation(root, "val")
    assert dataset.class_names == ("cat", "dog")
    assert dataset[0]["labels"].tolist() == [0, 1]
    with pytest.warns(UserWarning, match="class_names differ"):
        VOCSegmentation(root, "val", class_names=["dog", "cat"])


def test_empty_split_list(voc_tree):
    root = voc_tree(images={"a": (8, 8)}, splits={"val": []})
    with pytest.raises(ValueError, match="no image ids"):
        VOCSegmentation(root, "val")
