"""The built-in synthetic segmentation datasets and their exports: the PASCAL VOC 2012 layout,
and a plain image folder with a CSV of tags.

Images come from :func:`~dcsm_lightning.data.scenes.render_scene` with a scene family of
:data:`SCENE_FAMILIES` (``shapes``, the default, or ``glyphs``); image ``index`` of split
``split`` is drawn from its own generator ``numpy.random.default_rng([stream(split), seed,
index])``, so any image can be rebuilt alone and the train, val and test splits are disjoint
streams.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from dcsm_lightning.data.classes import labels_from_mask
from dcsm_lightning.data.glyphs import GLYPHS
from dcsm_lightning.data.scenes import SHAPES, SceneFamily, render_scene
from dcsm_lightning.files import atomic_path, save_label_png, save_text

SPLITS = ("train", "val", "test")
JPEG_QUALITY = 95
#: The scene families by name: ``shapes`` (the built-in six classes) and ``glyphs`` (five).
SCENE_FAMILIES: dict[str, SceneFamily] = {family.name: family for family in (SHAPES, GLYPHS)}


def scene_family(name: str) -> SceneFamily:
    """The family called ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in SCENE_FAMILIES:
        raise ValueError(f"family must be one of {sorted(SCENE_FAMILIES)}, got {name!r}")
    return SCENE_FAMILIES[name]


def _stream(split: str) -> int:
    """A fixed 32-bit tag per split name, mixed into the seed (train / val / test differ)."""
    return zlib.crc32(f"dcsm-lightning/synthetic/{split}".encode())


class SyntheticScenes(Dataset):
    """Procedural scenes of textured shapes for weakly supervised segmentation.

    Each image shows objects of the family's classes (``shapes``: 1-4 large objects of the
    :data:`SYNTHETIC_CLASSES`; ``glyphs``: 1-5 small ones of the
    :data:`~dcsm_lightning.data.glyphs.GLYPH_CLASSES`; each class a shape with its own
    texture, colours drawn from one law shared by all classes) over a cluttered background,
    with occlusion and a 255 void band along the object outlines. Samples are raw (not
    letterboxed); the datamodules add letterboxing and normalisation.

    Each sample is a dict: ``rgb`` uint8 S x S x 3 (numpy), ``mask`` int64 S x S (0 =
    background, class k -> k + 1, 255 = void), ``labels`` float32 K (multi-hot, from the mask),
    ``id`` str (``"train_000012"``).

    Args:
        num_images: the length of the dataset.
        size: the image side S in pixels (>= 32).
        seed: non-negative seed; (seed, split, index) determines an image.
        split: ``"train"``, ``"val"`` or ``"test"`` (independent streams).
        family: the scene family, a key of :data:`SCENE_FAMILIES`.

    Raises:
        ValueError: negative ``num_images`` or ``seed``, ``size < 32``, unknown ``split`` or
            ``family``.
    """

    def __init__(
        self,
        num_images: int,
        size: int = 96,
        seed: int = 0,
        split: str = "train",
        family: str = "shapes",
    ) -> None:
        if num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        if size < 32:
            raise ValueError(f"size must be >= 32 pixels, got {size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.family = scene_family(family)
        self.class_names: tuple[str, ...] = self.family.class_names
        self.num_images = num_images
        self.size = size
        self.seed = seed
        self.split = split

    @property
    def num_classes(self) -> int:
        """K, the number of foreground classes."""
        return len(self.class_names)

    def __len__(self) -> int:
        return self.num_images

    def image_id(self, index: int) -> str:
        """The id of image ``index``, e.g. ``"val_000003"``."""
        return f"{self.split}_{index:06d}"

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -self.num_images <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        index %= self.num_images
        rng = np.random.default_rng([_stream(self.split), self.seed, index])
        rgb, mask = render_scene(rng, self.size, self.family)
        return {
            "rgb": rgb,
            "mask": mask,
            "labels": labels_from_mask(mask, self.num_classes),
            "id": self.image_id(index),
        }


def _export_root(out_dir: str | os.PathLike, overwrite: bool) -> Path:
    root = Path(out_dir).expanduser()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"export folder {root} is a file, not a folder")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(
            f"export folder {root} is not empty; choose a new folder or pass overwrite=True "
            "(--overwrite) to replace the files of the same names"
        )
    return root


def _save_jpeg(path: Path, rgb: np.ndarray, overwrite: bool) -> None:
    with atomic_path(path, overwrite=overwrite) as tmp:
        Image.fromarray(rgb).save(tmp, format="JPEG", quality=JPEG_QUALITY, subsampling=0)


def export_voc(
    out_dir: str | os.PathLike,
    num_train: int,
    num_val: int,
    seed: int,
    size: int = 96,
    overwrite: bool = False,
    family: str = "shapes",
) -> Path:
    """Write the synthetic train and val splits in the PASCAL VOC 2012 folder layout.

    The result reads back with :class:`~dcsm_lightning.data.voc.VOCSegmentation` (which picks
    up ``class_names.txt``) with exactly the masks and labels of :class:`SyntheticScenes`::

        out_dir/
          JPEGImages/<id>.jpg                  (JPEG, quality 95, no chroma subsampling)
          SegmentationClass/<id>.png           (VOC palette PNG: 0 bg, k + 1, 255 void)
          ImageSets/Segmentation/train.txt     (one id per line)
          ImageSets/Segmentation/val.txt
          class_names.txt                      (the K names, one per line)

    Every file is written atomically. With ``overwrite`` existing files of the same names are
    replaced; other files already in ``out_dir`` are left alone.

    Args:
        out_dir: the folder to create (absent or empty unless ``overwrite``).
        num_train, num_val: the split sizes (>= 0).
        seed: the dataset seed (as in :class:`SyntheticScenes`).
        size: image side in pixels.
        overwrite: allow writing into a non-empty folder.
        family: the scene family (:data:`SCENE_FAMILIES`).

    Returns:
        ``out_dir`` as a Path (the ``root`` to give to the VOC loader).

    Raises:
        FileExistsError: ``out_dir`` exists and is not empty, and ``overwrite`` is False.
        NotADirectoryError: ``out_dir`` is a file.
    """
    datasets = [
        SyntheticScenes(num_train, size, seed, "train", family),
        SyntheticScenes(num_val, size, seed, "val", family),
    ]
    root = _export_root(out_dir, overwrite)
    for dataset in datasets:
        ids = []
        for index in range(len(dataset)):
            sample = dataset[index]
            ids.append(sample["id"])
            _save_jpeg(root / "JPEGImages" / f"{sample['id']}.jpg", sample["rgb"], overwrite)
            save_label_png(
                root / "SegmentationClass" / f"{sample['id']}.png", sample["mask"], overwrite
            )
        split_file = root / "ImageSets" / "Segmentation" / f"{dataset.split}.txt"
        save_text(split_file, "".join(f"{i}\n" for i in ids), overwrite=overwrite)
    names = datasets[0].class_names
    save_text(root / "class_names.txt", "".join(f"{n}\n" for n in names), overwrite)
    return root


def sorted_class_ids(class_names: Sequence[str]) -> np.ndarray:
    """A lookup table (256,) from mask ids in ``class_names`` order to sorted-name order.

    0 (background) and 255 (void) map to themselves; ``table[mask]`` relabels a mask.
    """
    table = np.arange(256, dtype=np.int64)
    ordered = sorted(class_names)
    for k, name in enumerate(class_names):
        table[k + 1] = ordered.index(name) + 1
    return table


def export_folder(
    out_dir: str | os.PathLike,
    splits: Mapping[str, int],
    seed: int,
    size: int = 96,
    overwrite: bool = False,
    family: str = "shapes",
) -> Path:
    """Write synthetic splits as a plain image folder plus a CSV of tags per split.

    This is the layout of "your own images" (read by
    :class:`~dcsm_lightning.data.TaggedImagesDataModule`): no lists, and masks only for
    evaluation::

        out_dir/
          images/<id>.jpg          (JPEG, quality 95, no chroma subsampling, as export_voc)
          masks/<id>.png           (VOC palette PNG: 0 bg, 255 void, classes numbered 1..K
                                    in sorted name order: the default class_names)
          <split>.csv              (header "image,tags"; e.g. "train_000003.jpg,disc star")

    The tags are those of :class:`SyntheticScenes` (from the masks). The masks number the
    classes in sorted name order (``cross`` 1, ``disc`` 2, ...), the order
    :class:`~dcsm_lightning.data.TaggedImagesDataModule` derives from the tags, so they
    evaluate without giving ``class_names``. Every file is written atomically; ``overwrite``
    as in :func:`export_voc`.

    Args:
        out_dir: the folder to create (absent or empty unless ``overwrite``).
        splits: split name (``train``, ``val``, ``test``) -> number of images (>= 0).
        seed: the dataset seed. size: image side in pixels.
        overwrite: allow writing into a non-empty folder.
        family: the scene family (:data:`SCENE_FAMILIES`).

    Returns:
        ``out_dir`` as a Path.

    Raises:
        FileExistsError: ``out_dir`` is not empty and ``overwrite`` is False.
        NotADirectoryError: ``out_dir`` is a file.
        ValueError: an unknown split or a negative count.
    """
    datasets = [
        SyntheticScenes(count, size, seed, split, family) for split, count in splits.items()
    ]
    root = _export_root(out_dir, overwrite)
    names = scene_family(family).class_names
    relabel = sorted_class_ids(names)
    for dataset in datasets:
        rows = ["image,tags\n"]
        for index in range(len(dataset)):
            sample = dataset[index]
            name = f"{sample['id']}.jpg"
            _save_jpeg(root / "images" / name, sample["rgb"], overwrite)
            mask = relabel[sample["mask"]]
            save_label_png(root / "masks" / f"{sample['id']}.png", mask, overwrite)
            tags = " ".join(n for n, on in zip(names, sample["labels"], strict=True) if on)
            rows.append(f"{name},{tags}\n")
        save_text(root / f"{dataset.split}.csv", "".join(rows), overwrite=overwrite)
    return root
