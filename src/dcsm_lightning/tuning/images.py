"""Which labelled images ``tune`` reads: a seeded draw of TRAIN images, or the user's masks.

Only the datamodule's ``train`` split is ever opened here (``datamodule.dataset("train")``);
validation images are never read, so val stays clean for the final evaluation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from dcsm_lightning.data.datamodule import SegmentationDataModule
from dcsm_lightning.data.masks import MaskFolder, find_mask_folder
from dcsm_lightning.data.samples import PreparedDataset, collate_batch
from dcsm_lightning.errors import UserError

__all__ = ["draw_indices", "split_loader", "tuning_loader"]


def draw_indices(size: int, count: int, seed: int) -> list[int]:
    """``min(count, size)`` distinct indices of ``range(size)`` drawn with ``seed``, sorted."""
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(size, generator=generator)[:count].tolist())


def split_loader(
    datamodule: SegmentationDataModule,
    role: str,
    indices: Sequence[int],
    dataset: Dataset | None = None,
) -> DataLoader:
    """Batches (no flips, no shuffling) of the samples ``indices`` of the ``role`` split (or of
    ``dataset``), prepared as the datamodule prepares evaluation batches."""
    raw = datamodule.dataset(role) if dataset is None else dataset
    prepared = PreparedDataset(raw, datamodule.size)
    return DataLoader(
        Subset(prepared, list(indices)),
        batch_size=datamodule.batch_size,
        collate_fn=collate_batch,
    )


class _Picked(Dataset):
    """Some samples of a dataset, with their ``ids`` (what :class:`MaskFolder` matches)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], ids: Sequence[str]) -> None:
        self.dataset, self.indices, self.ids = dataset, list(indices), list(ids)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset[self.indices[index]]


def tuning_loader(
    datamodule: SegmentationDataModule,
    num_images: int,
    seed: int = 0,
    masks: str | os.PathLike | None = None,
) -> tuple[DataLoader, str]:
    """The tuning images as batches, and a line saying which they are.

    Args:
        datamodule: the data; only its ``train`` split is read.
        num_images: how many TRAIN images (with their masks) to draw, at most.
        seed: the draw's seed.
        masks: a folder of ``<image id>.png`` label maps (0 background, k + 1 class k, 255
            void; or its ``SegmentationClass/``) for some TRAIN images: those images are used,
            with these masks, instead of a draw (``num_images`` then caps their number).

    Raises:
        UserError: no TRAIN image has a mask in ``masks``; the split has no images.
    """
    train = datamodule.dataset("train")
    if masks is None:
        if len(train) == 0:  # type: ignore[arg-type]
            raise UserError("the datamodule's train split has no images to tune on")
        chosen = draw_indices(len(train), num_images, seed)  # type: ignore[arg-type]
        line = f"{len(chosen)} of the {len(train)} TRAIN images, drawn with seed {seed}"  # type: ignore[arg-type]
        return split_loader(datamodule, "train", chosen), line
    try:
        folder = find_mask_folder(masks)
    except FileNotFoundError as err:
        raise UserError(str(err).replace("train_mask_root", "--masks"), None) from None
    ids = list(getattr(train, "ids", []))
    have = [i for i, name in enumerate(ids) if (Path(folder) / f"{name}.png").is_file()]
    if not have:
        raise UserError(
            f"--masks {masks}: none of its .png files is named after a TRAIN image id",
            f"name each mask <id>.png after its image (e.g. {ids[0] if ids else 'img_001'}.png)",
        )
    have = have[:num_images] if num_images else have
    picked = _Picked(train, have, [ids[i] for i in have])
    labelled = MaskFolder(picked, folder, datamodule.num_classes)
    line = f"{len(have)} TRAIN images with masks in {folder}"
    return split_loader(datamodule, "train", range(len(have)), labelled), line
