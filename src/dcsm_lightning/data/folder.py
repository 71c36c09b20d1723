"""A folder of images (searched recursively), matched to tag rows, as a dataset of raw samples.

An image's id is its path relative to the folder without the suffix (``"cats/img_001"``), so
the prediction writer mirrors the folder's layout. A tag row names an image by that relative
path with or without its suffix (``cats/img_001.jpg`` or ``cats/img_001``), which is also how
the VOC ids of ``cls_labels.npy`` find ``JPEGImages/<id>.jpg``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from dcsm_lightning.data.tags import TagRow
from dcsm_lightning.data.transforms import load_rgb
from dcsm_lightning.data.voc import check_mask_labels, check_mask_size, load_label_map

_ORIENTATION = 0x0112  # the EXIF tag
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def some(items: Sequence[str], limit: int = 5) -> str:
    """``"a, b, c, d, e and 7 more"``: the first few of a list, for messages."""
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def image_id(relative_path: str) -> str:
    """``"cats/img_001.jpg"`` -> ``"cats/img_001"``: the id an image's outputs are named by."""
    stem, _ = os.path.splitext(relative_path)
    return stem


def find_images(folder: str | os.PathLike) -> list[str]:
    """Relative paths (``/``-separated, sorted) of the images under ``folder``, recursively.

    Files with a suffix in :data:`IMAGE_EXTENSIONS` (any case) count; hidden files and folders
    (names starting with ``.``) are skipped. Symbolic links to folders are followed, each real
    folder once (a link back up the tree is not a loop).

    Raises:
        FileNotFoundError: ``folder`` is not a folder.
        ValueError: a file name is not valid UTF-8, or two images share an id (``a.jpg`` and
            ``a.png``: their outputs would collide); names the file.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a folder")
    found: list[str] = []
    visited: set[str] = set()
    for current, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(current)
        if real in visited:
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        relative = Path(current).relative_to(root)
        for name in files:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            path = (relative / name).as_posix()
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:
                shown = os.fsencode(root / path).decode("utf-8", "backslashreplace")
                raise ValueError(f"image file name {shown} is not valid UTF-8; rename it") from None
            found.append(path)
    found.sort()
    ids: dict[str, str] = {}
    for path in found:
        other = ids.setdefault(image_id(path), path)
        if other != path:
            raise ValueError(
                f"images {root / other} and {root / path} share the id {image_id(path)!r} "
                "(outputs are named by path without suffix); rename one"
            )
    return found


def match_rows(
    rows: Sequence[TagRow], files: Sequence[str], root: Path | None = None
) -> tuple[dict[str, TagRow], list[TagRow]]:
    """Pair tag rows with image files by relative path, with or without the suffix; an
    absolute path under ``root`` (the image folder) counts as its path relative to it.

    Returns:
        ``({file: row}, rows_without_a_file)``.
    """
    by_key = {f: f for f in files} | {image_id(f): f for f in files}
    matched: dict[str, TagRow] = {}
    absent: list[TagRow] = []
    for row in rows:
        file = by_key.get(_relative(row.image.replace("\\", "/").removeprefix("./"), root))
        if file is None:
            absent.append(row)
        else:
            matched[file] = row
    return matched, absent


def _relative(image: str, root: Path | None) -> str:
    """``image`` relative to ``root`` if it is an absolute path under it, else unchanged."""
    if root is None or not os.path.isabs(image):
        return image
    for base in (root, root.resolve()):
        if Path(image).is_relative_to(base):
            return Path(image).relative_to(base).as_posix()
    return image


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied), without decoding the pixels."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            turned = image.getexif().get(_ORIENTATION) in (5, 6, 7, 8)
            return (height, width) if turned else (width, height)
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read {path}: corrupt or not an image ({exc})") from exc


class TaggedImages(Dataset):
    """Images of a folder with their multi-hot tags and, optionally, masks for evaluation.

    Samples are dicts: ``rgb`` uint8 H x W x 3, ``labels`` float32 K, ``id`` str (relative path
    without suffix), and ``mask`` int64 H x W (0 background, class k -> k + 1, 255 void) when a
    masks folder is given.

    Args:
        root: the image folder.
        files: relative paths of the images (from :func:`find_images`).
        labels: float32 N x K multi-hot tags (all-zero rows for untagged images).
        masks: folder of ``<id>.png`` index masks (VOC ids), or None.

    Raises:
        FileNotFoundError: a mask is missing for some image (says how many, names a few).
        ValueError: a mask whose size differs from its image (checked from the file headers).
        ValueError (when reading a sample): an unreadable image or mask, mask values above K
            other than 255.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        files: Sequence[str],
        labels: np.ndarray,
        masks: str | os.PathLike | None = None,
    ) -> None:
        self.root = Path(root)
        self.files = list(files)
        self.labels = np.asarray(labels, dtype=np.float32).reshape(len(self.files), -1)
        self.ids = [image_id(f) for f in self.files]
        self.mask_paths: list[Path] | None = None
        if masks is not None:
            self.mask_paths = [Path(masks) / f"{image_id(f)}.png" for f in self.files]
            self._check_masks(Path(masks))

    def _check_masks(self, folder: Path) -> None:
        assert self.mask_paths is not None
        absent = [str(p.relative_to(folder)) for p in self.mask_paths if not p.is_file()]
        if absent:
            raise FileNotFoundError(
                f"{len(absent)} of {len(self.files)} images have no mask in {folder} "
                f"(expected <id>.png, mirroring the image paths): {some(absent)}"
            )
        for file, mask_path in zip(self.files, self.mask_paths, strict=True):
            (image_w, image_h), (mask_w, mask_h) = (
                image_size(self.root / file),
                image_size(mask_path),
            )
            check_mask_size((mask_h, mask_w), (image_h, image_w), mask_path, self.root / file)

    @property
    def has_masks(self) -> bool:
        """Whether samples carry a ``mask``."""
        return self.mask_paths is not None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample: dict[str, Any] = {
            "rgb": load_rgb(self.root / self.files[index]),
            "labels": self.labels[index],
            "id": self.ids[index],
        }
        if self.mask_paths is not None:
            mask = load_label_map(self.mask_paths[index])
            check_mask_labels(mask, self.labels.shape[1], self.mask_paths[index])
            sample["mask"] = mask
        return sample
