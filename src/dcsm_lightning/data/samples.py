"""One raw sample -> tensors of the batch contract, and prepared samples -> one batch.

``docs/contracts.md``: a raw sample (``rgb`` uint8 H x W x 3, optional ``mask``, ``labels``,
``id``) is letterboxed to S x S by :func:`prepare_sample`; :func:`collate_batch` stacks
prepared samples and adds the normalised ``image``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dcsm_lightning.data.transforms import letterbox, normalize

__all__ = ["PreparedDataset", "collate_batch", "prepare_sample"]


def prepare_sample(sample: dict[str, Any], size: int, hflip: bool = False) -> dict[str, Any]:
    """Letterbox a raw sample (``rgb``, optional ``mask``, ``labels``, ``id``) to tensors.

    Args:
        sample: a raw sample; ``rgb`` uint8 H x W x 3, ``mask`` int H x W, ``labels`` K.
        size: S, the letterbox side.
        hflip: mirror the image (and mask) left-right before letterboxing.

    Returns:
        dict with ``rgb`` uint8 S x S x 3, ``mask`` int64 S x S (if the sample had one),
        ``valid`` bool S x S, ``labels`` float32 K, ``orig_size`` int64 (2,), ``id`` str.
    """
    rgb, mask = sample["rgb"], sample.get("mask")
    orig_size = torch.tensor(rgb.shape[:2], dtype=torch.int64)
    if hflip:
        rgb = rgb[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    rgb, mask, valid = letterbox(rgb, mask, size)
    out = {
        "rgb": torch.from_numpy(rgb),
        "valid": torch.from_numpy(valid),
        "labels": torch.as_tensor(np.asarray(sample["labels"]), dtype=torch.float32),
        "orig_size": orig_size,
        "id": str(sample["id"]),
    }
    if mask is not None:
        out["mask"] = torch.from_numpy(mask)
    return out


def collate_batch(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack prepared samples into a contract batch; adds the normalised ``image``.

    ``mask`` is included only when every sample has one. Padding (``valid`` False) is set to
    exactly 0 in ``image``.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    rgb = torch.stack([s["rgb"] for s in samples])
    valid = torch.stack([s["valid"] for s in samples])
    image = normalize(rgb)
    image.masked_fill_(~valid[:, None], 0.0)
    batch: dict[str, Any] = {
        "image": image,
        "rgb": rgb,
        "labels": torch.stack([s["labels"] for s in samples]),
        "valid": valid,
        "orig_size": torch.stack([s["orig_size"] for s in samples]),
        "id": [s["id"] for s in samples],
    }
    if all("mask" in s for s in samples):
        batch["mask"] = torch.stack([s["mask"] for s in samples])
    return batch


class PreparedDataset(Dataset):
    """Wrap a raw-sample dataset with :func:`prepare_sample` (random flips when ``hflip``)."""

    def __init__(self, dataset: Dataset, size: int, hflip: bool = False) -> None:
        self.dataset = dataset
        self.size = size
        self.hflip = hflip

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        flip = self.hflip and bool(torch.rand(()) < 0.5)
        return prepare_sample(self.dataset[index], self.size, hflip=flip)
