"""Count every image once under DDP, whatever sampler the user's datamodule gives.

Lightning puts a ``torch.utils.data.DistributedSampler`` on evaluation DataLoaders that have
none. It pads the dataset so that every process gets as many samples: with 7 images on 2
processes, one image is evaluated twice, and a metric summed over processes counts it twice.
The padding is always the tail of the global index list (positions N ... N + pad - 1, shuffled
or not), so on process r exactly ``len(range(r, N, world_size))`` leading samples are real and
the rest repeat others. :class:`PaddingFilter` counts the samples each process has seen and
masks the repeats out of the metric updates. Our own datamodules use an unrepeated sampler,
which needs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor
from torch.utils.data import DistributedSampler

__all__ = ["PaddingFilter", "counted", "real_samples"]


def real_samples(dataloader: Any) -> int | None:
    """How many leading samples of ``dataloader`` on this process are not padding repeats.

    Returns:
        the count for a padding ``DistributedSampler`` (``drop_last=False``; also on a batch
        sampler), else None (nothing is repeated: one process, an unrepeated sampler, or a
        sampler of the user's own).
    """
    sampler = getattr(getattr(dataloader, "batch_sampler", None), "sampler", None)
    if not isinstance(sampler, DistributedSampler):
        sampler = getattr(dataloader, "sampler", None)
    if (
        not isinstance(sampler, DistributedSampler)
        or isinstance(sampler, UnrepeatedDistributedSampler)
        or sampler.drop_last
    ):
        return None
    return len(range(sampler.rank, len(sampler.dataset), sampler.num_replicas))


class PaddingFilter:
    """Which samples of each evaluation batch to count: all but a sampler's padding repeats.

    Call :meth:`start` with the stage's DataLoaders when the stage starts, then :meth:`keep`
    once per batch, in order.
    """

    def __init__(self) -> None:
        self.limits: dict[int, int | None] = {}
        self.seen: dict[int, int] = {}

    def start(self, dataloaders: Any) -> None:
        """Read the samplers of the stage's DataLoaders (one, a list, or None)."""
        if dataloaders is None:
            loaders: Iterable[Any] = []
        elif isinstance(dataloaders, (list, tuple)):
            loaders = dataloaders
        else:
            loaders = [dataloaders]
        self.limits = {i: real_samples(loader) for i, loader in enumerate(loaders)}
        self.seen = {}

    def keep(self, dataloader_idx: int, batch_size: int) -> Tensor | None:
        """Bool (B,) mask of the batch's samples to count, or None to count them all."""
        start = self.seen.get(dataloader_idx, 0)
        self.seen[dataloader_idx] = start + batch_size
        limit = self.limits.get(dataloader_idx)
        if limit is None or start + batch_size <= limit:
            return None
        return torch.arange(start, start + batch_size) < limit


def counted(
    masks: Mapping[str, Tensor], target: Tensor, keep: Tensor | None
) -> tuple[dict[str, Tensor], Tensor]:
    """The masks (method -> (B, S, S)) and target (B, S, S) of the samples ``keep`` marks."""
    if keep is None:
        return dict(masks), target
    return {m: v[keep.to(v.device)] for m, v in masks.items()}, target[keep.to(target.device)]
