"""BatchAdapter: dict and tuple batches, callables, and the defaults for absent fields."""

from __future__ import annotations

import pytest
import torch

from dcsm_lightning.data.adapter import BatchAdapter, as_adapter, rgb_from_image
from dcsm_lightning.data.transforms import normalize


def test_our_dict_batch_is_read_as_it_is() -> None:
    batch = {
        "image": torch.randn(2, 3, 8, 8),
        "rgb": torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8),
        "mask": torch.zeros(2, 8, 8, dtype=torch.long),
        "labels": torch.ones(2, 4),
        "valid": torch.ones(2, 8, 8, dtype=torch.bool),
        "orig_size": torch.tensor([[5, 8], [8, 3]]),
        "id": ["a", "b"],
    }
    view = BatchAdapter()(batch, 3)
    assert view.image is batch["image"] and view.rgb is batch["rgb"]
    assert view.ids == ["a", "b"] and view.orig_size.tolist() == [[5, 8], [8, 3]]
    assert view.valid is batch["valid"] and len(view) == 2


def test_tuple_batch_gets_the_defaults() -> None:
    rgb = torch.randint(0, 256, (2, 6, 7, 3), dtype=torch.uint8)
    image = normalize(rgb)  # ImageNet normalisation, B x 3 x H x W
    mask = torch.randint(0, 3, (2, 1, 6, 7), dtype=torch.uint8)
    view = BatchAdapter(image=0, labels=1, mask=2)((image, torch.ones(2, 4), mask), batch_idx=5)
    assert torch.equal(view.rgb, rgb)  # recovered exactly from the normalised image
    assert view.ids == ["5_0", "5_1"]
    assert view.orig_size.tolist() == [[6, 7], [6, 7]] and view.valid is None
    assert view.mask.dtype == torch.long and view.mask.shape == (2, 6, 7)


def test_integer_ids_callable_and_errors() -> None:
    image = torch.zeros(3, 3, 4, 4)
    view = BatchAdapter()({"image": image, "id": torch.tensor([7, 8, 9])})
    assert view.ids == ["7", "8", "9"]
    adapter = as_adapter(lambda b: {"image": b["x"], "id": b["names"]})
    assert adapter({"x": image, "names": ["p", "q", "r"]}).ids == ["p", "q", "r"]
    with pytest.raises(ValueError, match="no image"):
        BatchAdapter()((image,))
    with pytest.raises(ValueError, match="2 ids for a batch of 3"):
        BatchAdapter()({"image": image, "id": ["a", "b"]})
    with pytest.raises(TypeError, match="BatchAdapter or a callable"):
        as_adapter(3)


def test_rgb_from_image_custom_mean_std() -> None:
    image = torch.full((1, 3, 2, 2), 0.0)
    assert rgb_from_image(image, (0.5, 0.5, 0.5), (1, 1, 1)).unique().tolist() == [128]


def test_a_key_given_but_absent_is_an_error_naming_the_batch_keys():
    # Issue 19: BatchAdapter(mask="mask") on batches keyed "seg" ran without mIoU, and a wrong
    # id key gave files named 0_0.png; both name the batch's keys now.
    batch = {"img": torch.zeros(2, 3, 4, 4), "seg": torch.zeros(2, 4, 4), "name": ["a", "b"]}
    with pytest.raises(ValueError, match=r"no key 'mask' \(the mask field\).*'img', 'name', 'seg'"):
        BatchAdapter(image="img", mask="mask")(batch)
    with pytest.raises(ValueError, match=r"no key 'names' \(the id field\)"):
        BatchAdapter(image="img", mask="seg", id="names")(batch)
    with pytest.raises(ValueError, match=r"tuple of 2 items, so mask=2"):
        BatchAdapter(image=0, mask=2)((torch.zeros(1, 3, 4, 4), torch.zeros(1, 2)))
    view = BatchAdapter(image="img", mask="seg", id="name")(batch)
    assert view.ids == ["a", "b"] and view.mask is not None
    assert BatchAdapter(image="img")(batch).mask is None  # unset fields stay optional
