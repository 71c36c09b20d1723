"""``TaggedImagesDataModule``: your own folder of images with image-level tags, no masks needed."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import Dataset

from dcsm_lightning.data.classes import check_class_names
from dcsm_lightning.data.datamodule import SegmentationDataModule
from dcsm_lightning.data.folder import IMAGE_EXTENSIONS, TaggedImages, find_images, match_rows, some
from dcsm_lightning.data.tags import TagRow, check_tag_names, multi_hot, read_tag_file

#: Letterbox side used when neither ``size`` nor a checkpoint gives one.
DEFAULT_SIZE = 320
SPLITS = ("train", "val", "all")


class TaggedImagesDataModule(SegmentationDataModule):
    """A folder of images and a file of their tags: train, validate, predict and pseudo-label.

    Images are found recursively under ``images`` (.jpg .jpeg .png .webp .bmp .tif); ``tags``
    maps each image, by its path relative to ``images`` (with or without suffix), to class
    names (see :mod:`dcsm_lightning.data.tags` for CSV, JSON and ``cls_labels.npy``). Splits:

    - ``"train"``: tagged images not in the validation split; images without a row are
      skipped with a warning that says how many;
    - ``"val"`` (also ``test``): the rows of ``val_tags``, else ``val_fraction`` of the tagged
      images drawn with ``seed``; with ``masks`` its batches carry ``mask`` for mIoU, without
      them validation logs mAP / F1 only (said once);
    - ``"all"`` (``predict``'s default): every image found, tagged or not (untagged images get
      all-zero labels; predict uses the classifier's own candidates). ``pseudo-labels`` uses
      ``"train"`` with the tags as candidates.

    ``class_names`` fixes the label order (class k is mask value k + 1); by default it is the
    sorted set of names in ``tags`` and ``val_tags``. The CLI links it into the model, so it is
    stored in the checkpoint, and ``predict --ckpt_path`` takes it (and ``size``) from there.

    Args:
        images: the image folder.
        tags: tag file of the training (and, without ``val_tags``, validation) images.
        class_names: the K foreground names in label order; default: sorted names in the tags.
        val_tags: tag file of the validation images (also under ``images``).
        val_fraction: share of the tagged images held out for validation without ``val_tags``.
        seed: seed of the ``val_fraction`` draw.
        masks: folder of ``<id>.png`` index masks (VOC ids, mirroring ``images``), used only to
            evaluate (validation / test mIoU), never to train.
        size: letterbox side S; None: the checkpoint's under ``--ckpt_path``, else 320.
        batch_size, num_workers, pin_memory, hflip: see :class:`SegmentationDataModule`.
        predict_split: ``"all"`` (None), ``"train"`` (what ``pseudo-labels`` sets) or ``"val"``.
        train_mask_root: train a segmentation network on these masks (the ``--output_dir`` of
            ``pseudo-labels``), see :class:`SegmentationDataModule`.

    Raises:
        FileNotFoundError: a missing tag file or image folder.
        ValueError: a bad tag file (names the line), neither ``tags`` nor ``class_names``, a
            class outside ``class_names``, ``val_fraction`` outside [0, 1), unknown split.
        FileNotFoundError / ValueError at ``setup``: rows without an image file, images in both
            tag files, missing masks or masks of another size (each says how many and names
            the first few).
    """

    def __init__(
        self,
        images: str,
        tags: str | None = None,
        class_names: list[str] | None = None,
        val_tags: str | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        masks: str | None = None,
        size: int | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        pin_memory: bool = False,
        hflip: bool = True,
        predict_split: str | None = None,
        train_mask_root: str | None = None,
    ) -> None:
        predict_split = predict_split or "all"
        super().__init__(
            DEFAULT_SIZE if size is None else size,
            batch_size,
            num_workers,
            pin_memory,
            hflip,
            train_split="train",
            val_split="val",
            predict_split=predict_split,
            train_mask_root=train_mask_root,
        )
        if predict_split not in SPLITS:
            raise ValueError(f"predict_split must be one of {SPLITS}, got {predict_split!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
        self.save_hyperparameters()
        self.images = Path(images).expanduser()
        self.masks = None if masks is None else Path(masks).expanduser()
        if self.masks is not None and not self.masks.is_dir():
            raise FileNotFoundError(f"masks folder {self.masks} does not exist")
        self.tag_files = {r: str(p) for r, p in (("train", tags), ("val", val_tags)) if p}
        self.rows = {r: read_tag_file(p, class_names) for r, p in self.tag_files.items()}
        if class_names is None:
            found = {name for rows in self.rows.values() for row in rows for name in row.names}
            if not self.tag_files:
                raise ValueError(
                    "TaggedImagesDataModule needs tags (a tag file) or class_names; "
                    "with predict --ckpt_path they come from the checkpoint"
                )
            if not found:
                raise ValueError(f"{', '.join(self.tag_files.values())}: no row names a class")
            class_names = sorted(found)
            field = f"the class names in {', '.join(self.tag_files.values())}"
        else:
            field = "class_names"
        self.class_names = list(check_class_names(class_names, field))
        # Loggers merge these hparams with the model's, which holds the resolved names; predict
        # --ckpt_path reads the size from them.
        resolved = {"class_names": self.class_names, "size": self.size}
        self.save_hyperparameters({**self.hparams, **resolved})
        for role, rows in self.rows.items():
            check_tag_names(rows, self.class_names, self.tag_files[role])
        self.val_fraction = val_fraction
        self.seed = seed
        self._found: list[str] | None = None
        self._splits: dict[str, list[tuple[str, TagRow]]] | None = None
        self._said_no_masks = False

    @property
    def has_masks(self) -> bool:
        """Whether validation / test batches carry masks: only with ``masks``."""
        return self.masks is not None

    def _files(self) -> list[str]:
        """Every image under ``images`` (relative paths), found once."""
        if self._found is None:
            self._found = find_images(self.images)
            if not self._found:
                suffixes = " ".join(IMAGE_EXTENSIONS)
                raise FileNotFoundError(f"no images ({suffixes}) under {self.images}")
        return self._found

    def _train_val(self) -> dict[str, list[tuple[str, TagRow]]]:
        """``{"train": [(file, row)], "val": [...]}``; checks the rows against the files, once."""
        if self._splits is not None:
            return self._splits
        files = self._files()
        matched: dict[str, dict[str, TagRow]] = {}
        for role, rows in self.rows.items():
            matched[role], absent = match_rows(rows, files, self.images)
            if absent:
                first = [f"{row.image} (line {row.line})" for row in absent]
                raise FileNotFoundError(
                    f"{len(absent)} of {len(rows)} rows of {self.tag_files[role]} name no image "
                    f"under {self.images}: {some(first)} (paths are relative to {self.images}, "
                    "or absolute under it)"
                )
        train, val = matched.get("train", {}), matched.get("val", {})
        both = sorted(set(train) & set(val))
        if both:
            raise ValueError(
                f"{len(both)} images are in both {self.tag_files['train']} and "
                f"{self.tag_files['val']}: {some(both)}"
            )
        if "val" not in matched and train:
            keys = sorted(train)
            count = int(np.ceil(self.val_fraction * len(keys)))
            drawn = np.random.default_rng(self.seed).permutation(len(keys))[:count]
            val = {keys[i]: train[keys[i]] for i in drawn}
            train = {k: v for k, v in train.items() if k not in val}
        tagged = {**train, **val}
        untagged = [f for f in files if f not in tagged]
        if untagged and self.tag_files:
            warnings.warn(
                f"{len(untagged)} of {len(files)} images under {self.images} have no row in "
                f"{' or '.join(self.tag_files.values())}; not used to train or validate "
                f"(predict still segments them): {some(untagged)}",
                stacklevel=2,
            )
        empty = sum(not row.names for row in tagged.values())
        if empty:
            rank_zero_info(f"{empty} of {len(tagged)} tagged images have no tags (background only)")
        self._splits = {"train": sorted(train.items()), "val": sorted(val.items())}
        return self._splits

    def make_dataset(self, split: str) -> Dataset:
        if split == "all":  # predict: every image; tags where a row matches (none needed)
            files = self._files()
            tags: dict[str, TagRow] = {}
            for rows in self.rows.values():
                tags.update(match_rows(rows, files, self.images)[0])
            entries: list[tuple[str, TagRow | None]] = [(f, tags.get(f)) for f in files]
        else:
            entries = list(self._train_val()[split])
            if not entries:
                hint = (
                    "give data.tags" if not self.tag_files else "give val_tags or val_fraction > 0"
                )
                raise ValueError(f"the {split!r} split of {self.images} has no images ({hint})")
        files = [f for f, _ in entries]
        labels = np.stack(
            [multi_hot(row.names if row else (), self.class_names) for _, row in entries]
        )
        masks = self.masks if split == "val" else None  # masks only evaluate
        return TaggedImages(self.images, files, labels, masks)

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if stage in ("fit", "validate", "test") and self.masks is None and not self._said_no_masks:
            self._said_no_masks = True
            rank_zero_info(
                "no masks folder (data.masks): validation logs mAP / F1 only; mIoU needs masks"
            )
