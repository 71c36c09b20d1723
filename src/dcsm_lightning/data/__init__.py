"""Datasets and datamodules: the built-in synthetic scenes, PASCAL VOC from disk, your own
folder of tagged images, and the letterbox / normalisation transforms that produce the batch
contract (``docs/contracts.md``)."""

from __future__ import annotations

from dcsm_lightning.data.classes import (
    SYNTHETIC_CLASSES,
    VOC_CLASSES,
    check_class_names,
    labels_from_mask,
)
from dcsm_lightning.data.datamodule import (
    SegmentationDataModule,
    SyntheticDataModule,
    VOCDataModule,
)
from dcsm_lightning.data.folder import IMAGE_EXTENSIONS, TaggedImages, find_images
from dcsm_lightning.data.glyphs import GLYPH_CLASSES
from dcsm_lightning.data.samples import collate_batch, prepare_sample
from dcsm_lightning.data.scenes import SceneFamily, render_scene
from dcsm_lightning.data.synthetic import (
    SCENE_FAMILIES,
    SyntheticScenes,
    export_folder,
    export_voc,
)
from dcsm_lightning.data.tagged import TaggedImagesDataModule
from dcsm_lightning.data.tags import TagRow, read_tag_file
from dcsm_lightning.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAD_RGB,
    ImageModeWarning,
    letterbox,
    load_rgb,
    normalize,
)
from dcsm_lightning.data.voc import VOCSegmentation, load_label_map, resolve_voc_root

__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PAD_RGB",
    "GLYPH_CLASSES",
    "SCENE_FAMILIES",
    "SYNTHETIC_CLASSES",
    "VOC_CLASSES",
    "ImageModeWarning",
    "SceneFamily",
    "SegmentationDataModule",
    "SyntheticDataModule",
    "SyntheticScenes",
    "TagRow",
    "TaggedImages",
    "TaggedImagesDataModule",
    "VOCDataModule",
    "VOCSegmentation",
    "check_class_names",
    "collate_batch",
    "export_folder",
    "export_voc",
    "find_images",
    "labels_from_mask",
    "letterbox",
    "load_label_map",
    "load_rgb",
    "normalize",
    "prepare_sample",
    "read_tag_file",
    "render_scene",
    "resolve_voc_root",
]
