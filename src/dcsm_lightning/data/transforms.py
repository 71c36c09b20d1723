"""Image loading, letterboxing (and undoing it) and ImageNet normalisation (the batch
contract's pixel side).

The paper rescales every image so that its longer side is 500 and zero-pads it to 500 x 500
(Sec. 4.2). :func:`letterbox` does the same at any size ``S``, placing the image at the
top-left and padding with the ImageNet mean colour, which :func:`normalize` maps to ~0 (the
datamodules then set the padding to exactly 0).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, ImageOps
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from dcsm_lightning.palette import VOID

#: ImageNet channel means (RGB, 0-1 scale).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: ImageNet channel standard deviations (RGB, 0-1 scale).
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: The letterbox padding colour: the ImageNet mean in 0-255, rounded -> (124, 116, 104).
PAD_RGB: tuple[int, int, int] = tuple(round(255 * m) for m in IMAGENET_MEAN)  # type: ignore[assignment]


class ImageModeWarning(UserWarning):
    """An image was not 8-bit RGB on disk and was converted (filter it with this category)."""


_TRUNCATED_LOCK = threading.Lock()


@contextlib.contextmanager
def _refuse_truncated() -> Iterator[None]:
    """Make PIL raise on truncated files even if the user set ``LOAD_TRUNCATED_IMAGES``."""
    with _TRUNCATED_LOCK:
        before = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = before


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB.

    Grayscale (``L``, ``1``; 16-bit ``I;16`` / ``I`` scaled to 8 bits), palette (``P``),
    ``CMYK`` and images with an alpha channel (``RGBA``, ``LA``) are converted to RGB (alpha
    is dropped, not composited) with an
    :class:`ImageModeWarning` naming the file. An EXIF orientation is applied (the image as a
    photo viewer shows it; :func:`~dcsm_lightning.data.voc.load_label_map` does the same for
    masks, so both stay aligned, and the writer's files have the displayed size).

    Args:
        path: image file (any format PIL reads).

    Returns:
        uint8 array H x W x 3.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not an image, is corrupt or truncated, is over Pillow's pixel
            limit, or holds float / 32-bit pixels (names the file).
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as image, _refuse_truncated():
            image.load()
            image = ImageOps.exif_transpose(image)
            mode = image.mode
            deep = mode in ("I", "F") or mode.startswith("I;16")
            rgb = image if mode == "RGB" or deep else image.convert("RGB")
            array = np.array(rgb)
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as exc:
        raise ValueError(
            f"cannot read image {path}: larger than Pillow's limit of {Image.MAX_IMAGE_PIXELS} "
            "pixels (PIL.Image.MAX_IMAGE_PIXELS); shrink the image or raise that limit"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(
            f"cannot read image {path}: corrupt, truncated or not an image ({exc})"
        ) from exc
    if deep:
        array = _gray16_to_rgb8(array, mode, path)
    if mode != "RGB":
        alpha = " (alpha channel dropped)" if "A" in mode else ""
        warnings.warn(
            f"{path} is a {mode!r} image; converted to RGB{alpha}", ImageModeWarning, stacklevel=2
        )
    return array


def _gray16_to_rgb8(values: np.ndarray, mode: str, path: str) -> np.ndarray:
    """16-bit grayscale H x W -> uint8 H x W x 3, scaled (``v / 257``), not clipped as Pillow's
    own conversion does (it turns every value above 255 white)."""
    if mode == "F" or values.min() < 0 or values.max() > 65535:
        raise ValueError(
            f"image {path} has {mode!r} pixels in [{values.min()}, {values.max()}]; "
            "save it as an 8- or 16-bit image"
        )
    gray = np.rint(values.astype(np.float64) / 257).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def letterbox_extent(height: int, width: int, size: int) -> tuple[int, int]:
    """Size (h, w) of a ``height`` x ``width`` image inside an ``size`` x ``size`` letterbox:
    the longer side becomes ``size``, the other keeps the aspect ratio (rounded, >= 1)."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def letterbox(
    rgb: np.ndarray, mask: np.ndarray | None, size: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Scale the longer side to ``size`` and pad to ``size x size``, image at the top-left.

    The image is resized bilinearly (antialiased when shrinking), the mask with exact nearest
    neighbour so that no new labels appear. An image whose longer side already is ``size``
    is not resampled at all.

    Args:
        rgb: uint8 H x W x 3.
        mask: integer H x W with values in [0, 255], or None.
        size: S, the output side in pixels (>= 1).

    Returns:
        ``(rgb, mask, valid)``: uint8 S x S x 3 padded with :data:`PAD_RGB`; int64 S x S padded
        with 255 (void), or None; bool S x S, True on the image's pixels.

    Raises:
        ValueError: bad shapes or dtypes, a mask that does not match the image, mask values
            outside [0, 255], or ``size < 1``.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8 H x W x 3, got {rgb.dtype} of shape {rgb.shape}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    height, width = rgb.shape[:2]
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (height, width) or not np.issubdtype(mask.dtype, np.integer):
            raise ValueError(
                f"mask must be an integer array of shape {(height, width)}, "
                f"got {mask.dtype} of shape {mask.shape}"
            )
        if mask.size and (mask.min() < 0 or mask.max() > VOID):
            raise ValueError(f"mask values must lie in [0, 255], got [{mask.min()}, {mask.max()}]")
    new_h, new_w = letterbox_extent(height, width, size)
    if (new_h, new_w) != (height, width):
        image = torch.from_numpy(rgb.copy()).permute(2, 0, 1)  # copy: rgb may be read-only
        image = TF.resize(image, [new_h, new_w], InterpolationMode.BILINEAR, antialias=True)
        rgb = image.permute(1, 2, 0).numpy()
        if mask is not None:
            labels = torch.from_numpy(mask.astype(np.uint8))[None]
            labels = TF.resize(labels, [new_h, new_w], InterpolationMode.NEAREST_EXACT)
            mask = labels[0].numpy()
    out_rgb = np.empty((size, size, 3), dtype=np.uint8)
    out_rgb[...] = PAD_RGB
    out_rgb[:new_h, :new_w] = rgb
    valid = np.zeros((size, size), dtype=bool)
    valid[:new_h, :new_w] = True
    out_mask = None
    if mask is not None:
        out_mask = np.full((size, size), VOID, dtype=np.int64)
        out_mask[:new_h, :new_w] = mask
    return out_rgb, out_mask, valid


def normalize(rgb: torch.Tensor | np.ndarray) -> torch.Tensor:
    """ImageNet-normalise uint8 RGB pixels, channels last -> channels first.

    Args:
        rgb: uint8 H x W x 3 or B x H x W x 3 (tensor or array), values 0-255.

    Returns:
        float32 3 x H x W or B x 3 x H x W: ``(rgb / 255 - IMAGENET_MEAN) / IMAGENET_STD``.
    """
    rgb = torch.as_tensor(rgb)
    if rgb.dtype != torch.uint8 or rgb.ndim not in (3, 4) or rgb.shape[-1] != 3:
        raise ValueError(
            f"rgb must be uint8 [B x] H x W x 3, got {rgb.dtype} of shape {tuple(rgb.shape)}"
        )
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=rgb.device)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=rgb.device)
    image = (rgb.float() / 255.0 - mean) / std
    return image.movedim(-1, -3).contiguous()


def letterbox_extents(valid: Tensor | None, orig_size: Tensor, size: int) -> Tensor:
    """Height and width of each real image inside its ``size`` x ``size`` letterbox.

    Args:
        valid: bool (B, S, S), True on image pixels (a top-left rectangle): the extent is
            its bounding box from the top-left corner (0 x 0 when no pixel is valid); or
            None to recompute the letterbox from ``orig_size`` (longer side scaled to
            ``size``, rounded).
        orig_size: int (B, 2), (height, width) of each image on disk.
        size: S.

    Returns:
        int64 (B, 2) on the CPU: (h, w) per image.
    """
    if valid is None:
        pairs = [letterbox_extent(int(h), int(w), size) for h, w in orig_size.tolist()]
        return torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2)
    valid = valid.detach().cpu()
    rows = valid.any(dim=2) * torch.arange(1, valid.shape[1] + 1)
    cols = valid.any(dim=1) * torch.arange(1, valid.shape[2] + 1)
    return torch.stack([rows.amax(dim=1), cols.amax(dim=1)], dim=1).to(torch.int64)


def uncrop_labels(labels: Tensor, extent: tuple[int, int], orig_size: Sequence[int]) -> Tensor:
    """Cut the letterbox off a label map and resize it to the image size (nearest).

    Args:
        labels: int S x S.
        extent: (h, w) of the valid top-left rectangle.
        orig_size: (H, W) wanted.

    Returns:
        uint8 H x W (255 stays void).
    """
    height, width = extent
    crop = labels[:height, :width]
    out_size = (int(orig_size[0]), int(orig_size[1]))
    if tuple(crop.shape) != out_size:
        crop = F.interpolate(crop[None, None].float(), size=out_size, mode="nearest-exact")[0, 0]
    return crop.to(torch.uint8)


def uncrop_images(images: Tensor, extent: tuple[int, int], orig_size: Sequence[int]) -> Tensor:
    """Cut the letterbox off C x S x S float images and resize to C x H x W (bilinear)."""
    height, width = extent
    crop = images[:, :height, :width].float()
    out_size = (int(orig_size[0]), int(orig_size[1]))
    if tuple(crop.shape[1:]) != out_size:
        crop = F.interpolate(
            crop[None], size=out_size, mode="bilinear", align_corners=False, antialias=True
        )[0]
    return crop
