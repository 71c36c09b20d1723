"""``NetworkSegmentation``: the evaluation flow of a segmentation network (the second stage)."""

from __future__ import annotations

from collections.abc import Sequence

from dcsm_lightning.segmentation.callback import SaliencySegmentation
from dcsm_lightning.segmentation.network_maps import NetworkMaps

__all__ = ["NetworkSegmentation"]


class NetworkSegmentation(SaliencySegmentation):
    """:class:`SaliencySegmentation` whose maps are a segmentation network's: the
    :class:`~dcsm_lightning.segmentation.network_maps.NetworkMaps` of the module's
    ``segment_logits(image)`` take the place of saliency maps, under one method name; masks,
    ``DenseCRF``, metrics, reports and the writer are the same as for the classifier. Give it
    to :class:`~dcsm_lightning.models.SegmentationNet` (``segmentation:
    {class_path: NetworkSegmentation}``).

    Args:
        name: the method name (``segnet``; ``segnet+crf`` with ``DenseCRF``); no ``+`` or ``/``.
        class_names: as in :class:`SaliencySegmentation` (default: the module's).
        segment_in_fit: also segment (and CRF) in ``fit``'s validation epochs (slow with
            ``DenseCRF``); by default ``fit`` validates the loss only.
        log_panels: log the labelled grid of the first validation images to TensorBoard.

    Raises:
        ValueError: a ``name`` with ``+`` or ``/``.
    """

    def __init__(
        self,
        name: str = "segnet",
        class_names: Sequence[str] | None = None,
        segment_in_fit: bool = False,
        log_panels: bool = True,
    ) -> None:
        super().__init__(
            [], class_names, segment_in_fit=segment_in_fit, log_panels=log_panels
        )
        self.source = NetworkMaps(name)
