"""A segmentation network's logits as maps of the evaluation flow (the second stage).

The flow finds the module: :class:`NetworkMaps` reads ``model.segment_logits(image)`` (its
test-time scales and flips), so a segmentation network is evaluated, refined and written
exactly like the classifier's saliency maps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dcsm_lightning.data.adapter import SegmentationBatch
from dcsm_lightning.palette import VOID
from dcsm_lightning.segmentation.labels import maps_from_label_logits
from dcsm_lightning.segmentation.methods import check_part

__all__ = ["NetworkMaps", "label_maps"]


def label_maps(logits: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """A segmentation network's logits B x (K + 1) x S x S as the evaluation flow reads them.

    Returns:
        ``probs`` B x K, the highest probability of each class over the (valid) image;
        ``candidates`` B x K bool, the classes that win at least one valid pixel; ``maps``
        B x K x S x S in [0, 1],
        :func:`~dcsm_lightning.segmentation.labels.maps_from_label_logits` on the
        candidates (0 elsewhere), whose Eq. 7 labels are the per-pixel argmax.
    """
    labels = logits.argmax(dim=1)
    if valid is not None:
        labels = labels.masked_fill(~valid, VOID)
    classes = torch.arange(1, logits.shape[1], device=labels.device)
    candidates = (labels[:, None] == classes[None, :, None, None]).flatten(2).any(2)
    probs = logits.softmax(dim=1)[:, 1:]
    if valid is not None:
        probs = probs.masked_fill(~valid[:, None], 0.0)
    maps = maps_from_label_logits(logits) * candidates[..., None, None]
    return probs.flatten(2).amax(2), candidates, maps


class NetworkMaps:
    """The map source of a segmentation network: :func:`label_maps` of its logits.

    Reads ``model.segment_logits(image)`` (B x (K + 1) x S x S); when the module's step
    already computed them (``scores``), they are reused.

    Args:
        name: the method name of the network's masks (``segnet``; ``segnet+crf`` refined).

    Raises:
        ValueError: a ``name`` with ``+`` or ``/``.
    """

    def __init__(self, name: str) -> None:
        self.names = [check_part(name, "method")]

    def __call__(
        self, model: nn.Module, batch: SegmentationBatch, scores: Tensor | None = None
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        with torch.no_grad():
            logits = model.segment_logits(batch.image) if scores is None else scores
            probs, candidates, maps = label_maps(logits, batch.valid)
        return probs, candidates, {self.names[0]: maps}
