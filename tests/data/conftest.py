"""Tiny VOC-layout trees written on the fly (no real data needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcsm_lightning.files import save_label_png


def write_voc_tree(
    root: Path,
    images: dict[str, tuple[int, int]],
    splits: dict[str, list[str]],
    masks: dict[str, dict[str, np.ndarray]] | None = None,
    seed: int = 0,
) -> Path:
    """Write ``root/JPEGImages/<id>.png`` (lossless, so pixels are exact), the given masks
    (``{folder: {id: mask}}``) and ``ImageSets/Segmentation/<split>.txt``."""
    rng = np.random.default_rng(seed)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    for image_id, (height, width) in images.items():
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / "JPEGImages" / f"{image_id}.png")
    for folder, by_id in (masks or {}).items():
        for image_id, mask in by_id.items():
            save_label_png(root / folder / f"{image_id}.png", mask)
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


@pytest.fixture
def voc_tree(tmp_path) -> Callable[..., Path]:
    def make(**kwargs) -> Path:
        return write_voc_tree(tmp_path / kwargs.pop("name", "VOC2012"), **kwargs)

    return make
