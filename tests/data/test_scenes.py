"""Statistics of the synthetic scenes: classes, object counts, colour law, void borders."""

from __future__ import annotations

import numpy as np
import pytest

from dcsm_lightning.data import SYNTHETIC_CLASSES, SyntheticScenes, render_scene
from dcsm_lightning.data.scenes import CLASS_LOOKS, MIN_CONTRAST

K = len(SYNTHETIC_CLASSES)


@pytest.fixture(scope="module")
def scenes():
    dataset = SyntheticScenes(240, size=96, seed=7)
    return [dataset[i] for i in range(len(dataset))]


def test_one_shape_and_texture_per_class():
    assert len(CLASS_LOOKS) == K
    assert len({shape for shape, _ in CLASS_LOOKS}) == K
    assert len({texture for _, texture in CLASS_LOOKS}) == K


def test_every_class_appears_and_most_images_hold_several(scenes):
    labels = np.stack([s["labels"] for s in scenes])
    per_class = labels.mean(0)
    assert (per_class > 0.12).all(), per_class  # roughly balanced: each class in >12% of images
    per_image = labels.sum(1)
    assert per_image.min() >= 1 and per_image.max() <= 4
    assert (per_image >= 2).mean() > 0.6


def test_labels_agree_with_mask(scenes):
    for s in scenes:
        values = set(np.unique(s["mask"]).tolist()) - {0, 255}
        assert values <= set(range(1, K + 1))
        assert {int(k) for k in np.flatnonzero(s["labels"])} == {v - 1 for v in values}
        assert s["labels"].dtype == np.float32 and s["mask"].dtype == np.int64
        assert s["rgb"].dtype == np.uint8 and s["rgb"].shape == (96, 96, 3)


def test_objects_are_large(scenes):
    foreground = np.array([(s["mask"] != 0).mean() for s in scenes])  # objects + their borders
    assert 0.12 < foreground.mean() < 0.5
    assert foreground.min() > 0.03


def test_void_band_separates_every_pair_of_regions(scenes):
    """Like VOC, two different labels (background included) never touch: void lies between."""
    for s in scenes:
        mask = s["mask"]
        assert (mask == 255).any()
        padded = np.pad(mask, 1, mode="edge")
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                other = padded[dy : dy + 96, dx : dx + 96]
                clash = (mask != other) & (mask != 255) & (other != 255)
                assert not clash.any()


def _near(region: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within Chebyshev distance ``radius`` of ``region``."""
    size = region.shape[0]
    padded = np.pad(region, radius)
    out = np.zeros_like(region)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy : dy + size, dx : dx + size]
    return out


def test_void_band_is_a_thin_outline(scenes):
    """Void is an outline about 2 px wide: every void pixel lies within 3 px of a labelled
    pixel, most of them within 2 px of a visible object pixel."""
    near_object_fraction = []
    for s in scenes[:60]:
        mask = s["mask"]
        void = mask == 255
        assert _near(mask != 255, 3)[void].all()
        near_object_fraction.append(_near((mask > 0) & ~void, 2)[void].mean())
        assert void.mean() < 0.2
    assert np.mean(near_object_fraction) > 0.9  # the rest: thin tips, all void


def test_colour_does_not_identify_the_class(scenes):
    """A nearest-class-mean classifier on an object's mean colour stays near chance."""
    feats, classes = [], []
    for s in scenes:
        for k in np.flatnonzero(s["labels"]):
            feats.append(s["rgb"][s["mask"] == k + 1].astype(float).mean(0))
            classes.append(k)
    feats, classes = np.array(feats), np.array(classes)
    # the class explains almost none of the colour variance (eta squared per channel)
    means = np.stack([feats[classes == k].mean(0) for k in range(K)])
    weights = np.bincount(classes, minlength=K)[:, None] / len(classes)
    eta2 = (weights * (means - feats.mean(0)) ** 2).sum(0) / feats.var(0)
    assert (eta2 < 0.05).all(), eta2
    half = len(feats) // 2
    centroids = np.stack([feats[:half][classes[:half] == k].mean(0) for k in range(K)])
    guess = np.argmin(((feats[half:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (guess == classes[half:]).mean() < 2.0 / K  # chance is 1 / K


def test_objects_have_a_colour_edge_to_their_surroundings(scenes):
    """Mean colour inside an object differs from the ring of pixels just outside its border."""
    gaps = []
    for s in scenes[:80]:
        mask, rgb = s["mask"], s["rgb"].astype(float)
        for k in np.flatnonzero(s["labels"]):
            region = mask == k + 1
            grown = region.copy()
            for _ in range(4):
                grown[1:] |= grown[:-1]
                grown[:-1] |= grown[1:]
                grown[:, 1:] |= grown[:, :-1]
                grown[:, :-1] |= grown[:, 1:]
            ring = grown & (mask != 255) & ~region
            if ring.sum() > 20:
                gaps.append(np.linalg.norm(rgb[region].mean(0) - rgb[ring].mean(0)))
    assert np.median(gaps) > 0.6 * MIN_CONTRAST


def test_render_scene_rejects_tiny_images():
    with pytest.raises(ValueError, match="32"):
        render_scene(np.random.default_rng(0), 16)


@pytest.mark.parametrize("size", [32, 64, 150])
def test_other_sizes(size):
    rgb, mask = render_scene(np.random.default_rng(size), size)
    assert rgb.shape == (size, size, 3) and mask.shape == (size, size)
    assert ((mask > 0) & (mask < 255)).any()
