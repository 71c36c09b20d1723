"""Padding repeats of a DistributedSampler are not counted (issue 19)."""

from __future__ import annotations

import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, DistributedSampler

from dcsm_lightning.segmentation.distributed import PaddingFilter, counted, real_samples


def _loader(rank: int, sampler_class: type = DistributedSampler, shuffle: bool = False):
    data = list(range(7))
    sampler = sampler_class(data, num_replicas=2, rank=rank, shuffle=shuffle)
    return DataLoader(data, batch_size=3, sampler=sampler)


def test_each_of_seven_images_counted_once_on_two_processes():
    for shuffle in (False, True):
        counted_ids = []
        for rank in (0, 1):
            loader = _loader(rank, shuffle=shuffle)
            padding = PaddingFilter()
            padding.start([loader])
            for batch in loader:
                keep = padding.keep(0, len(batch))
                counted_ids += batch.tolist() if keep is None else batch[keep].tolist()
        assert sorted(counted_ids) == list(range(7)), shuffle  # without the filter: 8 items


def test_unrepeated_and_plain_loaders_count_everything():
    assert real_samples(_loader(1, UnrepeatedDistributedSampler)) is None
    assert real_samples(DataLoader(list(range(7)), batch_size=3)) is None
    assert real_samples(_loader(0)) == 4 and real_samples(_loader(1)) == 3
    masks, target = counted({"m": torch.arange(3)}, torch.arange(3), torch.tensor([1, 0, 1]) > 0)
    assert masks["m"].tolist() == [0, 2] and target.tolist() == [0, 2]
