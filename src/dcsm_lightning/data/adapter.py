"""Batch adapters: from anyone's batch format to the fields the segmentation pieces read.

Our DataLoaders yield the dict of ``docs/contracts.md``; other projects yield tuples
``(image, labels, mask)`` or dicts with other keys. A :class:`BatchAdapter` maps either to a
:class:`SegmentationBatch`, filling what is absent: ``rgb`` recovered from the normalised image,
ids from the batch index, ``orig_size`` = the image size, every pixel valid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dcsm_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD, letterbox_extents

__all__ = ["BatchAdapter", "SegmentationBatch", "as_adapter", "rgb_from_image"]

#: Where a field sits in a batch: a dict key (``"image"``) or a tuple position (``0``).
Key = str | int


@dataclass
class SegmentationBatch:
    """One batch as the segmentation pieces read it (shapes for B images of S x S pixels).

    Attributes:
        image: float (B, 3, S, S), the model's input (normalised).
        rgb: uint8 (B, S, S, 3), the same pixels for the CRF, overlays and panels.
        ids: B image ids (file names without extension, no folders).
        orig_size: int64 (B, 2), (height, width) of each image on disk.
        mask: int64 (B, S, S) ground truth (0 = background, class k -> k + 1, 255 = void),
            or None.
        labels: float (B, K) multi-hot image tags, or None.
        valid: bool (B, S, S), False on letterbox padding, or None (all valid).
        extent: int64 (B, 2) on the CPU, (h, w) of each real image inside its letterbox
            (:func:`~dcsm_lightning.data.transforms.letterbox_extents` of ``valid``, else of
            ``orig_size``): what the CRF crops to and the writer cuts out. Derived once.
    """

    image: Tensor
    rgb: Tensor
    ids: list[str]
    orig_size: Tensor
    mask: Tensor | None = None
    labels: Tensor | None = None
    valid: Tensor | None = None
    extent: Tensor | None = None

    def __post_init__(self) -> None:
        if self.extent is None:
            size = max(self.image.shape[-2:])
            self.extent = letterbox_extents(self.valid, self.orig_size, size)

    def select(self, keep: Sequence[int]) -> SegmentationBatch:
        """The batch of the images at positions ``keep`` (in that order)."""
        index = torch.as_tensor(list(keep), dtype=torch.int64)

        def pick(value: Tensor | None) -> Tensor | None:
            return None if value is None else value[index.to(value.device)]

        return SegmentationBatch(
            image=pick(self.image),
            rgb=pick(self.rgb),
            ids=[self.ids[i] for i in keep],
            orig_size=pick(self.orig_size),
            mask=pick(self.mask),
            labels=pick(self.labels),
            valid=pick(self.valid),
            extent=pick(self.extent),
        )

    def __len__(self) -> int:
        return len(self.image)


def rgb_from_image(
    image: Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """Undo ``(x / 255 - mean) / std``: float (B, 3, H, W) -> uint8 (B, H, W, 3).

    Args:
        image: normalised images, float (B, 3, H, W).
        mean, std: the 3 per-channel constants of the normalisation (0-1 scale).
    """
    mean_t = image.new_tensor(mean).view(1, 3, 1, 1)
    std_t = image.new_tensor(std).view(1, 3, 1, 1)
    rgb = ((image.detach() * std_t + mean_t) * 255).round().clamp(0, 255)
    return rgb.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


class BatchAdapter:
    """Read a :class:`SegmentationBatch` out of a user's batch by key mapping or a callable.

    Each field names where it sits in the batch: a key of a dict batch or a position of a
    tuple / list batch. A field left unset is read from its standard key (``"mask"``,
    ``"id"`` ...) when the batch has it, and otherwise takes its default: ``rgb`` from
    ``image`` (with ``mean`` / ``std``), ``id`` ``"<batch_idx>_<i>"``, ``orig_size`` the image
    size, ``valid`` all True; ``mask`` and ``labels`` stay None (no mIoU, or no tag
    candidates). A field given explicitly must be in every batch: a typo (``mask="mask"`` on
    batches keyed ``seg``) is an error naming the batch's keys, not a run without mIoU. The
    defaults read our own dict batches (``docs/contracts.md``) unchanged.

    Example: batches ``(image, labels, mask)`` -> ``BatchAdapter(image=0, labels=1, mask=2)``.

    Args:
        image, rgb, mask, labels, valid, id, orig_size: where each field sits; None (all
            but ``image``): the standard key, optional.
        mean, std: the normalisation of ``image`` (0-1 scale), to recover ``rgb``.
        transform: optional callable applied to the batch first; it returns a mapping read
            with the keys above (e.g. ``lambda b: {"image": b.x, "mask": b.y}``).

    Raises:
        ValueError: (when called) the batch has no image, lacks a key given explicitly (the
            message lists the batch's keys), or has ids / sizes of the wrong length.
    """

    def __init__(
        self,
        image: Key = "image",
        rgb: Key | None = None,
        mask: Key | None = None,
        labels: Key | None = None,
        valid: Key | None = None,
        id: Key | None = None,  # noqa: A002 - the field's name
        orig_size: Key | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        transform: Callable[[Any], Mapping[str, Any]] | None = None,
    ) -> None:
        given = {
            "image": image,
            "rgb": rgb,
            "mask": mask,
            "labels": labels,
            "valid": valid,
            "id": id,
            "orig_size": orig_size,
        }
        #: field -> where it is read (the standard key for fields left unset)
        self.keys: dict[str, Key] = {n: n if k is None else k for n, k in given.items()}
        #: the optional fields given explicitly: each must be in every batch (``image`` is
        #: always needed)
        self.required = tuple(n for n, k in given.items() if k is not None and n != "image")
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.transform = transform

    @staticmethod
    def _get(batch: Any, key: Key) -> Any:
        if isinstance(batch, Mapping):
            return batch.get(key)
        if isinstance(key, int) and isinstance(batch, Sequence) and -len(batch) <= key < len(batch):
            return batch[key]
        return None

    def _check_keys(self, batch: Any) -> None:
        """Raise ValueError when a field given explicitly is not in ``batch``."""
        for name in self.required:
            message = _missing_key_message(batch, name, self.keys[name])
            if message is not None:
                raise ValueError(message)

    def __call__(self, batch: Any, batch_idx: int = 0) -> SegmentationBatch:
        """The :class:`SegmentationBatch` of ``batch`` (``batch_idx`` names default ids)."""
        if self.transform is not None:
            batch = self.transform(batch)
        self._check_keys(batch)
        field = {name: self._get(batch, key) for name, key in self.keys.items()}
        image = field["image"]
        if not isinstance(image, Tensor) or image.ndim != 4:
            got = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            keys = f"; its keys are {sorted(map(str, batch))}" if isinstance(batch, Mapping) else ""
            raise ValueError(
                f"the batch has no image (B, 3, H, W) under {self.keys['image']!r} (got {got}"
                f"{keys}); tell the adapter where it is, e.g. BatchAdapter(image=0)"
            )
        size = len(image)
        rgb = field["rgb"]
        if rgb is None:
            rgb = rgb_from_image(image, self.mean, self.std)
        ids = _ids(field["id"], size, batch_idx)
        orig_size = field["orig_size"]
        if orig_size is None:
            orig_size = torch.tensor([list(image.shape[-2:])] * size)
        mask = field["mask"]
        if mask is not None:
            mask = mask.long()
            if mask.ndim == 4 and mask.shape[1] == 1:  # B x 1 x H x W
                mask = mask[:, 0]
        labels = field["labels"]
        return SegmentationBatch(
            image=image,
            rgb=rgb,
            ids=ids,
            orig_size=torch.as_tensor(orig_size),
            mask=mask,
            labels=None if labels is None else labels.float(),
            valid=field["valid"],
        )


def _missing_key_message(batch: Any, name: str, key: Key) -> str | None:
    """Why ``key`` (the ``name`` field) cannot be read from ``batch``, or None if it can."""
    if isinstance(batch, Mapping):
        if key in batch:
            return None
        return (
            f"BatchAdapter: the batch has no key {key!r} (the {name} field); its keys are "
            f"{sorted(map(str, batch))}: give {name}=<one of them>, or leave {name} unset"
        )
    if isinstance(batch, Sequence) and not isinstance(batch, str):
        if isinstance(key, int) and -len(batch) <= key < len(batch):
            return None
        return (
            f"BatchAdapter: the batch is a {type(batch).__name__} of {len(batch)} items, so "
            f"{name}={key!r} cannot be read: give {name}=<a position 0..{len(batch) - 1}>"
        )
    return None


def _ids(value: Any, size: int, batch_idx: int) -> list[str]:
    """B ids as strings: from a list, a tensor of integers, or ``"<batch_idx>_<i>"``."""
    if value is None:
        return [f"{batch_idx}_{i}" for i in range(size)]
    if isinstance(value, Tensor):
        value = value.flatten().tolist()
    elif isinstance(value, (str, int)):
        value = [value]
    ids = [str(v) for v in value]
    if len(ids) != size:
        raise ValueError(f"{len(ids)} ids for a batch of {size} images: {ids[:5]}")
    return ids


def as_adapter(adapter: BatchAdapter | Callable[[Any], Mapping[str, Any]] | None) -> BatchAdapter:
    """A :class:`BatchAdapter` from an adapter, a callable (its ``transform``) or None."""
    if adapter is None:
        return BatchAdapter()
    if isinstance(adapter, BatchAdapter):
        return adapter
    if callable(adapter):
        return BatchAdapter(transform=adapter)
    raise TypeError(f"expected a BatchAdapter or a callable, got {type(adapter).__name__}")
