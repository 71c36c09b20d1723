"""Training masks from a pseudo-labels folder (``train_mask_root``): masks and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dcsm_lightning.data import SyntheticDataModule, SyntheticScenes, VOCDataModule
from dcsm_lightning.files import save_label_png

NUM_TRAIN, SIZE = 6, 32


def _pseudo_masks(root, ids, size=SIZE, seed=1):
    """Random label PNGs (0..6, some void) in ``root/SegmentationClass``: unlike the truth."""
    rng = np.random.default_rng(seed)
    masks = {}
    for image_id in ids:
        mask = rng.integers(0, 7, (size, size))
        mask[0] = 255
        save_label_png(root / "SegmentationClass" / f"{image_id}.png", mask)
        masks[image_id] = mask
    return masks


def _synthetic(root, **kwargs):
    dm = SyntheticDataModule(
        num_train=NUM_TRAIN, num_val=2, size=SIZE, batch_size=NUM_TRAIN, hflip=False,
        train_mask_root=str(root), **kwargs,
    )  # fmt: skip
    dm.setup("fit")
    return dm


def _train_ids():
    scenes = SyntheticScenes(NUM_TRAIN, SIZE, 0, "train")
    return [scenes.image_id(i) for i in range(NUM_TRAIN)]


def test_train_batches_carry_the_folder_masks_and_val_keeps_the_truth(tmp_path):
    masks = _pseudo_masks(tmp_path, _train_ids())
    dm = _synthetic(tmp_path)
    batch = next(iter(dm.train_dataloader()))
    for image_id, mask in zip(batch["id"], batch["mask"], strict=True):
        assert torch.equal(mask, torch.from_numpy(masks[image_id]))
    truth = SyntheticScenes(NUM_TRAIN, SIZE, 0, "train")
    labels = torch.stack([torch.as_tensor(truth[i]["labels"]) for i in range(NUM_TRAIN)])
    by_id = dict(zip(_train_ids(), labels, strict=True))
    assert torch.equal(batch["labels"], torch.stack([by_id[i] for i in batch["id"]]))  # tags
    val = next(iter(dm.val_dataloader()))
    scenes = SyntheticScenes(2, SIZE, 0, "val")
    assert torch.equal(val["mask"][0], torch.from_numpy(scenes[0]["mask"]))


def test_the_segmentation_class_folder_itself_is_accepted(tmp_path):
    masks = _pseudo_masks(tmp_path, _train_ids())
    dm = _synthetic(tmp_path / "SegmentationClass")
    sample = dm.dataset("train")[0]
    assert np.array_equal(sample["mask"], masks[sample["id"]])


def test_a_missing_mask_names_the_file(tmp_path):
    ids = _train_ids()
    _pseudo_masks(tmp_path, ids[:2] + ids[3:])
    with pytest.raises(FileNotFoundError, match=rf"SegmentationClass/{ids[2]}\.png"):
        _synthetic(tmp_path)


def test_a_mask_of_the_wrong_size_names_the_file(tmp_path):
    ids = _train_ids()
    _pseudo_masks(tmp_path, ids)
    path = tmp_path / "SegmentationClass" / f"{ids[4]}.png"
    save_label_png(path, np.zeros((SIZE, SIZE + 2)), overwrite=True)
    with pytest.raises(ValueError, match=rf"{ids[4]}\.png is {SIZE + 2} x {SIZE} \(W x H\)"):
        _synthetic(tmp_path)


def test_a_label_outside_the_class_list_names_the_file(tmp_path):
    ids = _train_ids()
    _pseudo_masks(tmp_path, ids)
    bad = np.zeros((SIZE, SIZE))
    bad[3, 3] = 9  # K = 6 classes: labels 0..6 and 255
    save_label_png(tmp_path / "SegmentationClass" / f"{ids[1]}.png", bad, overwrite=True)
    with pytest.raises(ValueError, match=rf"{ids[1]}\.png has values \[9\] outside 0\.\.6"):
        _synthetic(tmp_path)


def test_a_missing_or_empty_train_mask_root_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_mask_root .*nowhere does not exist"):
        _synthetic(tmp_path / "nowhere")
    (tmp_path / "empty" / "SegmentationClass").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="train_mask_root .*empty holds no masks"):
        _synthetic(tmp_path / "empty")


def test_voc_reads_train_masks_lazily_and_names_a_bad_one(voc_tree, tmp_path):
    ids = ["a", "b", "c"]
    sizes = {"a": (20, 30), "b": (24, 24), "c": (16, 40)}
    truth = {i: np.ones(s, dtype=np.int64) for i, s in sizes.items()}
    root = voc_tree(
        images=sizes,
        splits={"train": ids, "val": ids},
        masks={"SegmentationClass": truth},
    )
    (root / "class_names.txt").write_text("one\ntwo\n")
    pseudo = tmp_path / "pseudo"
    save_label_png(pseudo / "SegmentationClass" / "a.png", np.full(sizes["a"], 2))
    save_label_png(pseudo / "SegmentationClass" / "b.png", np.zeros((5, 5)))  # wrong size
    save_label_png(pseudo / "SegmentationClass" / "c.png", np.zeros(sizes["c"]))
    dm = VOCDataModule(str(root), size=32, train_split="train", train_mask_root=str(pseudo))
    dm.setup("fit")
    train, val = dm.dataset("train"), dm.dataset("val")
    assert (train[0]["mask"] == 2).all() and (val[0]["mask"] == 1).all()
    with pytest.raises(ValueError, match=r"pseudo/SegmentationClass/b\.png is 5 x 5"):
        train[1]
