"""Training masks from a second folder: the pseudo-labels a segmentation network learns from.

``dcsm-lightning pseudo-labels`` writes ``<root>/SegmentationClass/<id>.png`` (VOC layout);
:class:`MaskFolder` puts those masks into the samples of a dataset in place of its own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from dcsm_lightning.data.voc import check_mask_labels, check_mask_size, load_label_map

MASK_FOLDER = "SegmentationClass"


def find_mask_folder(root: str | os.PathLike) -> Path:
    """``root/SegmentationClass`` if it exists, else ``root`` itself, checked to hold PNGs.

    Raises:
        FileNotFoundError: ``root`` does not exist or holds no ``.png`` masks.
    """
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"train_mask_root {path} does not exist; give the --output_dir of "
            "`dcsm-lightning pseudo-labels` (it holds SegmentationClass/<id>.png)"
        )
    folder = path / MASK_FOLDER if (path / MASK_FOLDER).is_dir() else path
    if not any(name.endswith(".png") for name in os.listdir(folder)):
        raise FileNotFoundError(
            f"train_mask_root {path} holds no masks ({folder} has no .png files); run "
            "`dcsm-lightning pseudo-labels --output_dir` into it first"
        )
    return folder


class MaskFolder(Dataset):
    """A dataset whose samples' ``mask`` is read from ``<root>/SegmentationClass/<id>.png``.

    The wrapped dataset's raw samples (``rgb`` uint8 H x W x 3, ``id``, ``labels``) are kept;
    only ``mask`` (int64 H x W: 0 background, class k -> k + 1, 255 void) is replaced. The
    image-level ``labels`` stay those of the wrapped dataset.

    Args:
        dataset: a raw-sample dataset with an ``ids`` attribute (one id per sample).
        root: the folder written by ``pseudo-labels`` (or the ``SegmentationClass`` folder).
        num_classes: K; mask values must lie in 0..K or be 255.
        preload: read and check every mask now, against its image, and keep them in memory
            (for in-memory datasets, whose samples are cheap to read).

    Raises:
        FileNotFoundError: ``root`` missing or without masks; a sample id without a mask
            (names the file expected).
        ValueError: (now with ``preload``, else when a sample is read) an unreadable mask, a
            mask whose size differs from its image, a label outside 0..K and 255 (names the
            file).
    """

    def __init__(
        self, dataset: Dataset, root: str | os.PathLike, num_classes: int, preload: bool = False
    ) -> None:
        ids = getattr(dataset, "ids", None)
        if ids is None:
            raise TypeError(f"{type(dataset).__name__} has no `ids`: cannot match masks to it")
        self.dataset = dataset
        self.folder = find_mask_folder(root)
        self.num_classes = num_classes
        missing = [i for i in ids if not (self.folder / f"{i}.png").is_file()]  # ids: a/b ok
        if missing:
            more = f" (and {len(missing) - 1} more of {len(ids)})" if len(missing) > 1 else ""
            raise FileNotFoundError(
                f"no mask {self.folder / (missing[0] + '.png')} for training image "
                f"{missing[0]!r}{more}; pseudo-label the whole training split"
            )
        self.paths = [self.folder / f"{i}.png" for i in ids]
        self._masks = None
        if preload:
            self._masks = [
                self.read_mask(path, self._image_shape(index))
                for index, path in enumerate(self.paths)
            ]

    def _image_shape(self, index: int) -> tuple[int, int]:
        return tuple(self.dataset[index]["rgb"].shape[:2])

    def read_mask(self, path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Read one mask and check its labels (and its size against ``shape`` = (H, W))."""
        mask = load_label_map(path)
        check_mask_labels(mask, self.num_classes, path)
        if shape is not None:
            check_mask_size(mask.shape, shape, path)
        return mask

    @property
    def ids(self) -> list[str]:
        """The wrapped dataset's ids."""
        return list(self.dataset.ids)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.dataset[index])
        if self._masks is None:
            sample["mask"] = self.read_mask(self.paths[index], tuple(sample["rgb"].shape[:2]))
        else:
            sample["mask"] = self._masks[index]
        return sample
