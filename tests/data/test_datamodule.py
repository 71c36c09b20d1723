"""The datamodules yield batches that follow docs/contracts.md exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dcsm_lightning.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAD_RGB,
    SYNTHETIC_CLASSES,
    SyntheticDataModule,
    SyntheticScenes,
    VOCDataModule,
    collate_batch,
    prepare_sample,
)

KEYS = {"image", "rgb", "labels", "mask", "valid", "orig_size", "id"}


def check_contract(batch, batch_size, size, num_classes, with_mask=True):
    assert set(batch) == (KEYS if with_mask else KEYS - {"mask"})
    assert batch["image"].dtype == torch.float32 and batch["image"].shape == (
        batch_size,
        3,
        size,
        size,
    )
    assert batch["rgb"].dtype == torch.uint8 and batch["rgb"].shape == (batch_size, size, size, 3)
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (
        batch_size,
        num_classes,
    )
    assert set(batch["labels"].unique().tolist()) <= {0.0, 1.0}
    assert batch["valid"].dtype == torch.bool and batch["valid"].shape == (batch_size, size, size)
    assert batch["orig_size"].dtype == torch.int64 and batch["orig_size"].shape == (batch_size, 2)
    assert isinstance(batch["id"], list) and len(batch["id"]) == batch_size
    assert all(isinstance(i, str) for i in batch["id"])
    if with_mask:
        assert batch["mask"].dtype == torch.int64 and batch["mask"].shape == (
            batch_size,
            size,
            size,
        )
        assert (batch["mask"][~batch["valid"]] == 255).all()
    # image = (rgb / 255 - mean) / std on real pixels, exactly 0 on padding
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    reference = (batch["rgb"].permute(0, 3, 1, 2).double() / 255 - mean) / std
    valid = batch["valid"][:, None].expand_as(reference)
    torch.testing.assert_close(batch["image"][valid].double(), reference[valid], atol=1e-5, rtol=0)
    assert (batch["image"][~valid] == 0).all()
    assert (batch["rgb"][~batch["valid"]] == torch.tensor(PAD_RGB, dtype=torch.uint8)).all()


@pytest.fixture(scope="module")
def synthetic():
    data = SyntheticDataModule(num_train=20, num_val=10, num_test=6, size=64, seed=1, batch_size=8)
    data.setup("fit")
    return data


def test_synthetic_datamodule_attributes(synthetic):
    assert synthetic.num_classes == len(SYNTHETIC_CLASSES)
    assert synthetic.class_names == list(SYNTHETIC_CLASSES)
    assert synthetic.hparams["num_train"] == 20


def test_synthetic_val_batches_follow_the_contract_and_match_the_dataset(synthetic):
    batches = list(synthetic.val_dataloader())
    assert [len(b["id"]) for b in batches] == [8, 2]
    check_contract(batches[0], 8, 64, len(SYNTHETIC_CLASSES))
    reference = SyntheticScenes(10, size=64, seed=1, split="val")
    for index in range(8):
        np.testing.assert_array_equal(batches[0]["rgb"][index].numpy(), reference[index]["rgb"])
        np.testing.assert_array_equal(batches[0]["mask"][index].numpy(), reference[index]["mask"])
    assert batches[0]["valid"].all() and (batches[0]["orig_size"] == 64).all()


def test_synthetic_train_batches_shuffle_flip_and_drop_the_last(synthetic):
    torch.manual_seed(0)
    batches = list(synthetic.train_dataloader())
    assert [len(b["id"]) for b in batches] == [8, 8]  # 20 samples, the last 4 dropped
    check_contract(batches[0], 8, 64, len(SYNTHETIC_CLASSES))
    reference = {s["id"]: s for s in SyntheticScenes(20, size=64, seed=1)}
    flipped = 0
    for batch in batches:
        for index, image_id in enumerate(batch["id"]):
            rgb, mask = batch["rgb"][index].numpy(), batch["mask"][index].numpy()
            want = reference[image_id]
            if np.array_equal(rgb, want["rgb"][:, ::-1]):
                np.testing.assert_array_equal(mask, want["mask"][:, ::-1])
                flipped += 1
            else:
                np.testing.assert_array_equal(rgb, want["rgb"])
                np.testing.assert_array_equal(mask, want["mask"])
            np.testing.assert_array_equal(batch["labels"][index].numpy(), want["labels"])
    assert 0 < flipped < 16


def test_synthetic_test_and_predict_splits(synthetic):
    synthetic.setup("test")
    test_ids = [i for b in synthetic.test_dataloader() for i in b["id"]]
    assert test_ids == [f"test_{i:06d}" for i in range(6)]
    predict_ids = [i for b in synthetic.predict_dataloader() for i in b["id"]]
    assert predict_ids == [f"val_{i:06d}" for i in range(10)]
    other = SyntheticDataModule(num_train=3, num_val=2, num_test=2, size=48, predict_split="test")
    assert [i for b in other.predict_dataloader() for i in b["id"]] == [
        "test_000000",
        "test_000001",
    ]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"size": 8}, "size"),
        ({"num_val": -1}, "num_val"),
        ({"predict_split": "tset"}, "predict_split"),
    ],
)
def test_synthetic_datamodule_rejects_bad_arguments(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        SyntheticDataModule(**kwargs)


def test_voc_datamodule_letterboxes_non_square_images(voc_tree):
    masks = {
        i: np.random.default_rng(n).choice([0, 1, 20, 255], (30, 45)) for n, i in enumerate("abc")
    }
    root = voc_tree(
        images={"a": (30, 45), "b": (30, 45), "c": (30, 45)},
        splits={"train": ["a", "b"], "val": ["c", "a"]},
        masks={"SegmentationClass": masks},
    )
    data = VOCDataModule(str(root), size=24, batch_size=2, train_split="train")
    assert data.num_classes == 20
    batch = next(iter(data.val_dataloader()))
    check_contract(batch, 2, 24, 20)
    assert batch["id"] == ["c", "a"]
    assert batch["orig_size"].tolist() == [[30, 45], [30, 45]]
    assert batch["valid"][:, :16].all() and not batch["valid"][:, 16:].any()  # 30 * 24 / 45 = 16
    assert batch["labels"][0].nonzero().flatten().tolist() == [0, 19]
    train = next(iter(data.train_dataloader()))
    check_contract(train, 2, 24, 20)


def test_voc_datamodule_predicts_on_unlabelled_images(voc_tree):
    root = voc_tree(images={"a": (10, 20), "b": (20, 10)}, splits={"test": ["a", "b"]})
    data = VOCDataModule(str(root), size=16, batch_size=2, predict_split="test")
    with pytest.warns(UserWarning, match="no masks"):
        batch = next(iter(data.predict_dataloader()))
    check_contract(batch, 2, 16, 20, with_mask=False)
    assert not batch["labels"].any()
    assert batch["valid"][0, :8].all() and not batch["valid"][0, 8:].any()
    assert batch["valid"][1, :, :8].all() and not batch["valid"][1, :, 8:].any()


def test_collate_omits_mask_unless_every_sample_has_one():
    samples = [s for s in SyntheticScenes(2, size=32)]
    prepared = [prepare_sample(s, 32) for s in samples]
    del prepared[1]["mask"]
    assert "mask" not in collate_batch(prepared)


def test_datamodules_build_from_a_config():
    """LightningCLI builds datamodules with jsonargparse from YAML-like config."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(SyntheticDataModule, "data")
    parser.add_class_arguments(VOCDataModule, "voc")
    config = parser.parse_object(
        {
            "data": {"num_train": 4, "size": 48},
            "voc": {"root": "/nowhere", "class_names": ["a", "b"]},
        }
    )
    objects = parser.instantiate_classes(config)
    assert objects["data"].num_classes == len(SYNTHETIC_CLASSES) and objects["data"].size == 48
    assert objects["voc"].class_names == ["a", "b"] and objects["voc"].num_classes == 2
