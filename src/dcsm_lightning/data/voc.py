"""PASCAL VOC 2012 (and SBD ``train_aug``) read from the user's disk; never downloads.

Any dataset in the VOC folder layout works, with its own class names: the synthetic export of
:func:`~dcsm_lightning.data.synthetic.export_voc` carries a ``class_names.txt`` that is picked
up automatically.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from dcsm_lightning.data.classes import VOC_CLASSES, check_class_names, labels_from_mask
from dcsm_lightning.data.transforms import letterbox, load_rgb
from dcsm_lightning.errors import with_hint
from dcsm_lightning.palette import VOID

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CLASS_NAMES_FILE = "class_names.txt"

LAYOUT_HINT = (
    "the layout: <root>/JPEGImages, SegmentationClass[Aug], ImageSets/Segmentation/<split>.txt "
    "(README, 'Real VOC and VGG-16 weights'); `dcsm-lightning synth --out DIR` writes an example"
)
LAYOUT_HELP = """\
dcsm-lightning never downloads data; it expects a PASCAL VOC 2012 tree on disk:
  <root>/                          the VOC2012 folder (or VOCdevkit/, which holds VOC2012/)
    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png     palette masks: 0 background, 1..K classes, 255 void
    SegmentationClassAug/<id>.png  optional: SBD masks for the train_aug split
    ImageSets/Segmentation/<split>.txt   one image id per line (train, val, train_aug, ...)
    class_names.txt                optional: K class names, one per line (default: VOC's 20)
Get VOC2012 from the PASCAL site (http://host.robots.ox.ac.uk/pascal/VOC/voc2012/, file
VOCtrainval_11-May-2012.tar) and extract it. For train_aug (10,582 images) add the SBD masks
of Hariharan et al. converted to PNG as SegmentationClassAug/ (the SegmentationClassAug.zip
most WSSS projects use) and put their train_aug.txt into ImageSets/Segmentation/.
To try the pipeline without VOC: `dcsm-lightning synth --out DIR` writes the synthetic
dataset in this layout (then use train_split=train)."""


def resolve_voc_root(root: str | os.PathLike) -> Path:
    """The VOC2012 folder: ``root/VOC2012`` if that exists (a VOCdevkit), else ``root``."""
    path = Path(root).expanduser()
    return path / "VOC2012" if (path / "VOC2012").is_dir() else path


def read_class_names(path: str | os.PathLike) -> tuple[str, ...]:
    """Read a ``class_names.txt`` (one name per line, blank lines skipped) and validate it."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return check_class_names([line.strip() for line in lines if line.strip()], field=str(path))


def resolve_class_names(
    root: str | os.PathLike, class_names: Sequence[str] | None
) -> tuple[str, ...]:
    """The class names to use for a VOC-layout ``root``.

    ``class_names`` if given (validated; a warning if ``root/class_names.txt`` disagrees),
    else the names in ``root/class_names.txt`` if present, else :data:`VOC_CLASSES`.
    """
    listed = resolve_voc_root(root) / CLASS_NAMES_FILE
    if class_names is None:
        return read_class_names(listed) if listed.is_file() else VOC_CLASSES
    names = check_class_names(class_names, field="class_names")
    if listed.is_file() and read_class_names(listed) != names:
        warnings.warn(
            f"class_names differ from {listed}; using the class_names given "
            "(pass class_names=None to use the file)",
            stacklevel=2,
        )
    return names


def read_split_ids(path: Path) -> list[str]:
    """Image ids of a split list: the first field of each line, reduced to its file stem.

    Handles plain VOC lists (``2007_000032``) and DeepLab-style pair lists
    (``/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png``).
    """
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields:
            ids.append(Path(fields[0]).stem)
    return ids


def _index_folder(folder: Path, suffixes: tuple[str, ...]) -> dict[str, str]:
    """Map file stem -> file name for the files in ``folder`` with one of ``suffixes``."""
    if not folder.is_dir():
        return {}
    index: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        stem, suffix = os.path.splitext(name)
        if suffix.lower() in suffixes:
            index.setdefault(stem, name)
    return index


def _some(items: Sequence[str], limit: int = 5) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def load_label_map(path: str | os.PathLike) -> np.ndarray:
    """Read an index mask (palette ``P`` or grayscale ``L`` PNG) as int64 H x W.

    Raises:
        ValueError: unreadable file, or a colour (RGB) mask; names the file.
    """
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)  # as load_rgb does for the image
            if image.mode not in ("P", "L", "I", "I;16"):
                raise ValueError(
                    f"mask {path} has mode {image.mode!r}; expected a single-channel index PNG "
                    "(mode P or L) whose values are class ids"
                )
            return np.asarray(image).astype(np.int64)
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read mask {path}: corrupt or not an image ({exc})") from exc


def check_mask_labels(mask: np.ndarray, num_classes: int, path: str | os.PathLike) -> None:
    """Raise ``ValueError`` naming ``path`` if ``mask`` holds a label outside 0..K and 255."""
    bad = (mask > num_classes) & (mask != VOID)
    if bad.any():
        raise ValueError(
            f"mask {path} has values {sorted(np.unique(mask[bad]).tolist())[:10]} "
            f"outside 0..{num_classes} and 255 (K = {num_classes} classes: "
            "are class_names right?)"
        )


def check_mask_size(
    mask_hw: tuple[int, int],
    image_hw: tuple[int, int],
    path: str | os.PathLike,
    image_path: str | os.PathLike | None = None,
) -> None:
    """Raise ``ValueError`` naming ``path`` if a mask's (H, W) differs from its image's."""
    if tuple(mask_hw) != tuple(image_hw):
        image = f"image {image_path}" if image_path is not None else "its image"
        raise ValueError(
            f"mask {path} is {mask_hw[1]} x {mask_hw[0]} (W x H) but {image} is "
            f"{image_hw[1]} x {image_hw[0]}"
        )


class VOCSegmentation(Dataset):
    """A split of a VOC-layout dataset with image-level labels derived from its masks.

    Samples are dicts: ``rgb`` uint8 H x W x 3, ``mask`` int64 H x W (0 background, class k ->
    k + 1, 255 void; absent without masks), ``labels`` float32 K (classes present in the mask,
    zeros without masks), ``id`` str. With ``size`` they are letterboxed to S x S and also carry
    ``valid`` (bool S x S) and ``orig_size`` (the (height, width) on disk).

    For ``split="train_aug"`` masks are looked up in ``SegmentationClassAug`` first, then in
    ``SegmentationClass``; for other splits the other way round. A split none of whose ids has
    a mask (e.g. VOC test) yields samples without masks, with a warning.

    Args:
        root: the VOC2012 folder, or a VOCdevkit folder holding ``VOC2012/``.
        split: name of a list in ``ImageSets/Segmentation/`` (``train``, ``val``, ``train_aug``).
        class_names: the K foreground names in label order; None: ``root/class_names.txt`` if
            present, else :data:`VOC_CLASSES`.
        size: letterbox every sample to ``size x size``; None returns images as stored.
        with_masks: False reads images only (for prediction on unlabelled data).

    Raises:
        FileNotFoundError: missing root, ``JPEGImages``, split list, listed images, or masks
            missing for part of the split (names the paths, explains the layout).
        ValueError: invalid ``class_names``; an empty split list; an id listed twice.
        ValueError (when reading a sample): unreadable image or mask, mask size different from
            its image, mask values above K other than 255.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        class_names: Sequence[str] | None = None,
        size: int | None = None,
        with_masks: bool = True,
    ) -> None:
        self.root = resolve_voc_root(root)
        self.split = split
        self.class_names = resolve_class_names(root, class_names)
        self.size = size
        image_dir = self.root / "JPEGImages"
        split_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        missing = [p for p in (self.root, image_dir, split_file) if not p.exists()][:1]
        if missing:
            hint = ""
            if missing[0] == split_file and split_file.parent.is_dir():
                found = sorted(p.stem for p in split_file.parent.glob("*.txt"))
                hint = f" (available splits: {', '.join(found) or 'none'})"
            raise with_hint(
                FileNotFoundError(
                    f"VOC data not found: {missing[0]} does not exist{hint}.\n{LAYOUT_HELP}"
                ),
                LAYOUT_HINT,
            )
        self.ids = read_split_ids(split_file)
        if not self.ids:
            raise ValueError(f"split list {split_file} lists no image ids")
        repeated = sorted(i for i, n in Counter(self.ids).items() if n > 1)
        if repeated:
            raise ValueError(
                f"split list {split_file} lists {_some(repeated)} more than once; "
                "remove the repeated lines"
            )
        images = _index_folder(image_dir, IMAGE_SUFFIXES)
        absent = [i for i in self.ids if i not in images]
        if absent:
            raise with_hint(
                FileNotFoundError(
                    f"{len(absent)} of {len(self.ids)} ids in {split_file} have no image in "
                    f"{image_dir} (looked for <id>.jpg / .jpeg / .png): {_some(absent)}."
                    f"\n{LAYOUT_HELP}"
                ),
                LAYOUT_HINT,
            )
        self.image_paths = [image_dir / images[i] for i in self.ids]
        self.mask_paths: list[Path] | None = None
        if with_masks:
            self.mask_paths = self._find_masks(split_file)

    def _find_masks(self, split_file: Path) -> list[Path] | None:
        names = ["SegmentationClassAug", "SegmentationClass"]
        if self.split != "train_aug":
            names.reverse()
        folders = [(self.root / n, _index_folder(self.root / n, (".png",))) for n in names]
        paths, absent = [], []
        for image_id in self.ids:
            found = next(
                (folder / index[image_id] for folder, index in folders if image_id in index), None
            )
            paths.append(found)
            if found is None:
                absent.append(image_id)
        if len(absent) == len(self.ids):
            warnings.warn(
                f"no masks for split {self.split!r} in {' or '.join(str(f) for f, _ in folders)}; "
                "its samples have no mask and all-zero labels",
                stacklevel=3,
            )
            return None
        if absent:
            raise with_hint(
                FileNotFoundError(
                    f"{len(absent)} of {len(self.ids)} ids in {split_file} have no mask "
                    f"<id>.png in {' or '.join(str(f) for f, _ in folders)}: {_some(absent)}."
                    f"\n{LAYOUT_HELP}"
                ),
                LAYOUT_HINT,
            )
        return paths

    @property
    def num_classes(self) -> int:
        """K, the number of foreground classes."""
        return len(self.class_names)

    @property
    def has_masks(self) -> bool:
        """Whether samples carry a ``mask``."""
        return self.mask_paths is not None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_path = self.image_paths[index]
        rgb = load_rgb(image_path)
        sample: dict[str, Any] = {"rgb": rgb, "id": self.ids[index]}
        mask = None
        if self.mask_paths is None:
            sample["labels"] = np.zeros(self.num_classes, dtype=np.float32)
        else:
            mask_path = self.mask_paths[index]
            mask = load_label_map(mask_path)
            check_mask_size(mask.shape, rgb.shape[:2], mask_path, image_path)
            check_mask_labels(mask, self.num_classes, mask_path)
            sample["mask"] = mask
            sample["labels"] = labels_from_mask(mask, self.num_classes)
        if self.size is not None:
            sample["orig_size"] = rgb.shape[:2]
            sample["rgb"], letterboxed, sample["valid"] = letterbox(rgb, mask, self.size)
            if mask is not None:
                sample["mask"] = letterboxed
        return sample
