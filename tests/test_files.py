from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from dcsm_lightning.files import (
    atomic_path,
    check_writable_dir,
    save_heatmap_png,
    save_json,
    save_label_png,
    save_overlay_png,
)
from dcsm_lightning.palette import blend_overlay, colorize_heatmap, voc_palette


def _labels(seed: int = 0, shape: tuple[int, int] = (7, 9)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 21, size=shape)
    labels[0, :3] = 255
    return labels


def _no_temp_files(folder) -> bool:
    return not [p for p in os.listdir(folder) if p.startswith(".")]


def test_voc_palette_known_colours():
    palette = voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert tuple(palette[0]) == (0, 0, 0)
    assert tuple(palette[1]) == (128, 0, 0)
    assert tuple(palette[15]) == (192, 128, 128)  # person
    assert tuple(palette[255]) == (224, 224, 192)


def test_label_png_round_trip(tmp_path):
    labels = _labels()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Pillow deprecation on the way
        path = save_label_png(tmp_path / "a.png", labels)
    with Image.open(path) as image:
        assert image.mode == "P"
        np.testing.assert_array_equal(np.asarray(image), labels)
        palette = np.asarray(image.getpalette(), dtype=np.uint8).reshape(-1, 3)
        rgb = np.asarray(image.convert("RGB"))
    assert tuple(palette[1]) == (128, 0, 0)
    assert tuple(palette[255]) == (224, 224, 192)
    assert tuple(rgb[0, 0]) == (224, 224, 192)  # void pixel shows the void colour
    np.testing.assert_array_equal(rgb, voc_palette()[labels])


def test_label_png_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="H x W"):
        save_label_png(tmp_path / "a.png", np.zeros((2, 2, 1), dtype=np.int64))
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        save_label_png(tmp_path / "a.png", np.full((2, 2), 256))
    assert not (tmp_path / "a.png").exists()


def test_no_overwrite_by_default(tmp_path):
    path = save_label_png(tmp_path / "a.png", np.zeros((2, 2), dtype=np.uint8))
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_label_png(path, np.ones((2, 2), dtype=np.uint8))
    assert path.read_bytes() == before
    save_label_png(path, np.ones((2, 2), dtype=np.uint8), overwrite=True)
    with Image.open(path) as image:
        assert np.asarray(image).tolist() == [[1, 1], [1, 1]]
    assert _no_temp_files(tmp_path)


def test_atomic_write_leaves_nothing_when_writer_raises(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with pytest.raises(RuntimeError, match="midway"):
        with atomic_path(target) as tmp:
            tmp.write_text("half a file")
            raise RuntimeError("midway")
    assert not target.exists()
    assert _no_temp_files(target.parent)


def test_atomic_write_keeps_old_file_when_replacement_fails(tmp_path):
    target = tmp_path / "out.json"
    save_json(target, {"v": 1})
    with pytest.raises(TypeError):
        save_json(target, {"v": object()}, overwrite=True)
    assert json.loads(target.read_text()) == {"v": 1}
    assert _no_temp_files(tmp_path)


def test_atomic_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_json(tmp_path / "a.json", {})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0o600


def test_unwritable_path_under_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = blocker / "sub" / "a.png"
    with pytest.raises(OSError, match="cannot write") as info:
        save_label_png(target, np.zeros((2, 2), dtype=np.uint8))
    assert str(target) in str(info.value)
    with pytest.raises(OSError, match="not writable") as info:
        check_writable_dir(blocker / "sub")
    assert str(blocker / "sub") in str(info.value)
    assert os.listdir(tmp_path) == ["file"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores chmod")
def test_unwritable_directory_chmod(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="cannot write") as info:
            save_json(folder / "a.json", {})
        assert str(folder / "a.json") in str(info.value)
        with pytest.raises(PermissionError, match="not writable"):
            check_writable_dir(folder)
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o700)


def test_save_json_converts_numpy_and_nan(tmp_path):
    path = save_json(tmp_path / "a.json", {"x": np.float32(0.5), "y": np.arange(3), "n": np.nan})
    assert json.loads(path.read_text()) == {"x": 0.5, "y": [0, 1, 2], "n": None}


def test_heatmap_png_uses_colormap(tmp_path):
    import matplotlib

    heat = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    path = save_heatmap_png(tmp_path / "h.png", heat)
    with Image.open(path) as image:
        assert image.mode == "RGB" and image.size == (4, 3)
        rgb = np.asarray(image)
    expected = matplotlib.colormaps["jet"](heat, bytes=True)[..., :3]
    np.testing.assert_array_equal(rgb, expected)
    assert tuple(rgb[0, 0]) != tuple(rgb[-1, -1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        colorize_heatmap(heat * 2)
    with pytest.raises(ValueError, match="NaN"):
        colorize_heatmap(np.full((2, 2), np.nan))


def test_overlay_blends_palette_colours(tmp_path):
    rgb = np.full((2, 3, 3), 100, dtype=np.uint8)
    labels = np.array([[0, 1, 255], [15, 0, 1]])
    out = blend_overlay(rgb, labels, alpha=0.5)
    assert tuple(out[0, 0]) == (100, 100, 100)  # background: the image unchanged
    assert tuple(out[0, 1]) == (114, 50, 50)  # (100 + 128) / 2, 100 / 2
    assert tuple(out[1, 0]) == (146, 114, 114)  # person (192, 128, 128)
    void = out[0, 2].astype(int)  # a faint veil of (224, 224, 192) at alpha / 3
    assert 100 < void[2] < void[0] < 130
    path = save_overlay_png(tmp_path / "o.png", rgb, labels, alpha=0.5)
    with Image.open(path) as image:
        np.testing.assert_array_equal(np.asarray(image), out)
    with pytest.raises(ValueError, match="matching"):
        blend_overlay(rgb, labels[:, :2])
