from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from dcsm_lightning.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAD_RGB,
    ImageModeWarning,
    letterbox,
    load_rgb,
    normalize,
)


def _rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_pad_colour_is_the_rounded_imagenet_mean():
    assert PAD_RGB == (124, 116, 104)
    assert PAD_RGB == tuple(round(255 * m) for m in IMAGENET_MEAN)


def test_letterbox_landscape_pads_bottom_with_void_and_mean_colour():
    rgb = _rgb(30, 60)
    mask = np.random.default_rng(1).integers(0, 4, (30, 60))
    out, out_mask, valid = letterbox(rgb, mask, 96)
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    assert out_mask.shape == (96, 96) and out_mask.dtype == np.int64
    assert valid.shape == (96, 96) and valid.dtype == bool
    expected_valid = np.zeros((96, 96), dtype=bool)
    expected_valid[:48, :] = True  # 30 * 96 / 60 = 48 rows, image at the top-left
    np.testing.assert_array_equal(valid, expected_valid)
    assert (out_mask[~valid] == 255).all()
    assert (out[~valid] == np.array(PAD_RGB, dtype=np.uint8)).all()
    assert set(np.unique(out_mask[valid])) <= set(np.unique(mask))  # nearest: no new labels


def test_letterbox_portrait_pads_right():
    out, mask, valid = letterbox(_rgb(50, 20), None, 25)
    assert mask is None
    assert valid[:, :10].all() and not valid[:, 10:].any()
    assert (out[:, 10:] == np.array(PAD_RGB, dtype=np.uint8)).all()


def test_letterbox_at_native_size_is_identity():
    rgb, mask = _rgb(40, 40), np.arange(1600).reshape(40, 40) % 256
    out, out_mask, valid = letterbox(rgb, mask, 40)
    np.testing.assert_array_equal(out, rgb)
    np.testing.assert_array_equal(out_mask, mask)
    assert valid.all()


def test_letterbox_mask_upscale_matches_pixel_replication():
    mask = np.array([[0, 1, 2], [3, 255, 4]])
    rgb = _rgb(2, 3)
    _, out_mask, _ = letterbox(rgb, mask, 6)
    np.testing.assert_array_equal(out_mask[:4], np.repeat(np.repeat(mask, 2, 0), 2, 1))


def test_letterbox_image_resize_matches_pil_bilinear():
    # a smooth image (noise upsampled), shrunk by 2: PIL's antialiased bilinear is the reference
    rgb = np.asarray(Image.fromarray(_rgb(20, 30, seed=3)).resize((120, 80), Image.BILINEAR))
    reference = np.asarray(Image.fromarray(rgb).resize((60, 40), Image.BILINEAR)).astype(int)
    out, _, valid = letterbox(rgb, None, 60)
    assert valid[:40].all() and not valid[40:].any()
    assert np.abs(out[:40].astype(int) - reference).mean() < 1.5


@pytest.mark.parametrize(
    ("rgb", "mask", "size", "needle"),
    [
        (np.zeros((4, 4), np.uint8), None, 8, "H x W x 3"),
        (np.zeros((4, 4, 3), np.float32), None, 8, "uint8"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.int64), 8, "mask"),
        (np.zeros((4, 4, 3), np.uint8), np.full((4, 4), 256), 8, "0, 255"),
        (np.zeros((4, 4, 3), np.uint8), None, 0, "size"),
    ],
)
def test_letterbox_rejects_bad_input(rgb, mask, size, needle):
    with pytest.raises(ValueError, match=needle):
        letterbox(rgb, mask, size)


def test_normalize_matches_reference_formula():
    rgb = torch.from_numpy(_rgb(5, 7))
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    reference = (rgb.numpy() / 255.0 - mean) / std
    out = normalize(rgb)
    assert out.shape == (3, 5, 7) and out.dtype == torch.float32
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), reference, atol=1e-5)
    batched = normalize(rgb[None].expand(2, -1, -1, -1))  # non-contiguous batch
    assert batched.shape == (2, 3, 5, 7)
    torch.testing.assert_close(batched[1], out)
    with pytest.raises(ValueError, match="uint8"):
        normalize(rgb.float())


def _save(path, image, **kwargs):
    image.save(path, **kwargs)
    return path


def test_load_rgb_reads_rgb_without_warning(tmp_path):
    rgb = _rgb(6, 9)
    path = _save(tmp_path / "a.png", Image.fromarray(rgb))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(load_rgb(path), rgb)


def test_load_rgb_converts_grayscale_with_a_warning(tmp_path):
    gray = np.arange(30, dtype=np.uint8).reshape(5, 6)
    path = _save(tmp_path / "gray.png", Image.fromarray(gray))
    with pytest.warns(ImageModeWarning, match="gray.png.*'L'"):
        out = load_rgb(path)
    assert out.shape == (5, 6, 3) and out.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], gray)


def test_load_rgb_drops_alpha_with_a_warning(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (4, 5, 4), dtype=np.uint8)
    path = _save(tmp_path / "alpha.png", Image.fromarray(rgba, mode="RGBA"))
    with pytest.warns(ImageModeWarning, match="alpha.png.*alpha channel dropped"):
        out = load_rgb(path)
    np.testing.assert_array_equal(out, rgba[..., :3])


def test_load_rgb_converts_palette_images(tmp_path):
    image = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8))
    image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    path = _save(tmp_path / "pal.png", image)
    with pytest.warns(ImageModeWarning, match="'P'"):
        out = load_rgb(path)
    np.testing.assert_array_equal(out[0, 1], [200, 100, 50])


def test_load_rgb_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"this is not a jpeg at all")
    with pytest.raises(ValueError, match="broken.jpg"):
        load_rgb(path)


@pytest.mark.parametrize("lenient", [False, True])
def test_load_rgb_truncated_jpeg_raises_even_if_pil_is_lenient(tmp_path, monkeypatch, lenient):
    buffer = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buffer, format="JPEG", quality=95)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", lenient)
    with pytest.raises(ValueError, match="cut.jpg.*truncated"):
        load_rgb(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is lenient  # the user's setting is restored


def test_load_rgb_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_rgb(tmp_path / "nope.jpg")
