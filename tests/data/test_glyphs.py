"""The second scene family, ``glyphs``: deterministic per seed, masks that match the images,
five distinct classes unlike the built-in ones, small objects; reachable from the datamodule,
the exports, ``synth`` and ``configs/data/glyphs.yaml``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from dcsm_lightning.app.cli import main
from dcsm_lightning.data import (
    GLYPH_CLASSES,
    SCENE_FAMILIES,
    SyntheticDataModule,
    SyntheticScenes,
    VOCSegmentation,
    export_voc,
)
from dcsm_lightning.data.scenes import SHAPES

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SIZE = 64
GLYPHS = SCENE_FAMILIES["glyphs"]


def _same(a, b):
    return np.array_equal(a["rgb"], b["rgb"]) and np.array_equal(a["mask"], b["mask"])


@pytest.fixture(scope="module")
def scenes():
    dataset = SyntheticScenes(120, size=96, seed=3, family="glyphs")
    return [dataset[i] for i in range(len(dataset))]


def test_generation_is_deterministic_per_seed_and_split():
    first = SyntheticScenes(6, SIZE, seed=2, family="glyphs")
    again = SyntheticScenes(40, SIZE, seed=2, family="glyphs")
    assert all(_same(first[i], again[i]) for i in (5, 0, 3))
    assert not _same(first[0], SyntheticScenes(1, SIZE, seed=3, family="glyphs")[0])
    assert not _same(first[0], SyntheticScenes(1, SIZE, seed=2, split="val", family="glyphs")[0])


def test_labels_come_from_the_mask_and_every_class_appears(scenes):
    labels = np.stack([s["labels"] for s in scenes])
    assert labels.shape[1] == len(GLYPH_CLASSES) == 5
    for s, row in zip(scenes, labels, strict=True):
        present = set(np.unique(s["mask"]).tolist()) - {0, 255}
        assert {k + 1 for k in np.flatnonzero(row)} == present
    assert (labels.mean(0) > 0.15).all()
    assert labels.sum(1).min() >= 1 and labels.sum(1).max() <= 5


def _gradient(rgb: np.ndarray) -> np.ndarray:
    image = rgb.astype(float)
    dy = np.abs(np.diff(image, axis=0, append=image[-1:])).sum(-1)
    dx = np.abs(np.diff(image, axis=1, append=image[:, -1:])).sum(-1)
    return dx + dy


def test_masks_match_the_images(scenes):
    """Image edges lie on the mask's outlines: the void band is sharper (mean image gradient)
    where it is than moved 2-4 px in any direction, and sharper than the background."""
    offsets = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5) if max(abs(dy), abs(dx)) >= 2]
    scores = np.zeros(1 + len(offsets))
    background = 0.0
    for s in scenes:
        grad, void = _gradient(s["rgb"]), s["mask"] == 255
        for i, offset in enumerate([(0, 0), *offsets]):
            scores[i] += grad[np.roll(void, offset, axis=(0, 1))].mean()
        background += grad[s["mask"] == 0].mean()
    assert scores[0] > 1.2 * scores[1:].max()
    assert scores[0] > 2.0 * background


def _canonical(shape, angle: float = 0.0) -> np.ndarray:
    axis = np.linspace(-1.3, 1.3, 131)
    u, v = np.meshgrid(axis, axis)
    return shape(np.cos(angle) * u + np.sin(angle) * v, -np.sin(angle) * u + np.cos(angle) * v)


def test_classes_are_distinct_and_unlike_the_built_in_ones():
    shapes = [shape for shape, _ in GLYPHS.looks]
    textures = [texture for _, texture in GLYPHS.looks]
    for i, a in enumerate(shapes):  # best overlap over rotations stays well below identity
        for b in shapes[i + 1 :]:
            best = max(
                (_canonical(a) & _canonical(b, t)).sum() / (_canonical(a) | _canonical(b, t)).sum()
                for t in np.linspace(0, np.pi, 12, endpoint=False)
            )
            assert best < 0.85
    x, y = np.meshgrid(np.arange(-20.0, 20.0), np.arange(-20.0, 20.0))
    patterns = [t(x, y, np.hypot(x, y) / 20, 6.0, 1.0).astype(bool) for t in textures]
    for i, a in enumerate(patterns):
        assert 0.25 < a.mean() < 0.75
        for b in patterns[i + 1 :]:
            assert (a != b).mean() > 0.25
    built_in = {f for look in SHAPES.looks for f in look}
    assert not built_in & {f for look in GLYPHS.looks for f in look}
    assert not set(GLYPH_CLASSES) & set(SHAPES.class_names)


def test_objects_are_smaller_than_the_built_in_ones(scenes):
    def mean_object_area(samples):
        return np.mean(
            [(s["mask"] == k + 1).mean() for s in samples for k in np.flatnonzero(s["labels"])]
        )

    shapes = SyntheticScenes(60, size=96, seed=3)
    assert mean_object_area(scenes) < 0.5 * mean_object_area([shapes[i] for i in range(60)])


def test_datamodule_selects_the_family_and_refuses_an_unknown_one():
    data = SyntheticDataModule(num_train=4, num_val=2, size=SIZE, family="glyphs")
    assert data.class_names == list(GLYPH_CLASSES) and data.num_classes == 5
    data.setup("fit")
    reference = SyntheticScenes(2, SIZE, 0, "val", "glyphs")
    assert all(_same(data.dataset("val")[i], reference[i]) for i in range(2))
    with pytest.raises(ValueError, match="family"):
        SyntheticDataModule(family="glyph")


def test_synth_exports_the_family_in_voc_layout(tmp_path, capsys):
    out = tmp_path / "voc"
    main(["synth", "--out", str(out), "--num_train=3", "--num_val=2", "--size=64"])
    assert (out / "class_names.txt").read_text().split() == list(SHAPES.class_names)
    out = tmp_path / "glyphs"
    main(
        ["synth", "--out", str(out), "--num_train=3", "--num_val=2", "--size=64"]
        + ["--family=glyphs"]
    )
    loaded = VOCSegmentation(out, "val")
    assert loaded.class_names == GLYPH_CLASSES
    assert np.array_equal(loaded[1]["mask"], SyntheticScenes(2, 64, 0, "val", "glyphs")[1]["mask"])
    with pytest.raises(ValueError, match="family"):
        export_voc(tmp_path / "bad", 1, 1, seed=0, family="nope")
    assert not (tmp_path / "bad").exists()


def test_the_data_config_stacks_on_the_demo_config(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["fit", "--config", str(CONFIGS / "synthetic.yaml")]
            + ["--config", str(CONFIGS / "data" / "glyphs.yaml"), "--print_config"]
        )
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["init_args"]["family"] == "glyphs"
    assert printed["data"]["init_args"]["num_train"] == 600
    assert printed["model"]["class_path"] == "dcsm_lightning.models.MultiLabelFCN"
