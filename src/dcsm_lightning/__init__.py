"""dcsm-lightning: weakly supervised semantic segmentation from distinct class-specific
saliency maps (Shimoda & Yanai, ECCV 2016) for PyTorch Lightning.

The names a user starts with are importable from here (loaded on first use, so
``import dcsm_lightning`` stays cheap)::

    from dcsm_lightning import SaliencySegmentation, DenseCRF, ComparisonReport
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("dcsm-lightning")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

#: public name -> the module that defines it
_EXPORTS = {
    "BatchAdapter": "dcsm_lightning.data.adapter",
    "CRFSettings": "dcsm_lightning.crf",
    "ComparisonReport": "dcsm_lightning.outputs.comparison",
    "DenseCRF": "dcsm_lightning.crf",
    "MultiLabelFCN": "dcsm_lightning.models",
    "NetworkSegmentation": "dcsm_lightning.segmentation.network",
    "SaliencySegmentation": "dcsm_lightning.segmentation.callback",
    "SaliencyStrategy": "dcsm_lightning.saliency",
    "SegmentationIoU": "dcsm_lightning.metrics",
    "SegmentationOutput": "dcsm_lightning.segmentation.callback",
    "SegmentationWriter": "dcsm_lightning.outputs.writer",
    "SyntheticDataModule": "dcsm_lightning.data",
    "VOCDataModule": "dcsm_lightning.data",
    "candidates_from_scores": "dcsm_lightning.saliency",
    "create_saliency": "dcsm_lightning.saliency",
    "crf_labels_from_maps": "dcsm_lightning.crf",
    "heatmap_overlay": "dcsm_lightning.segmentation.panels",
    "labels_from_maps": "dcsm_lightning.segmentation.labels",
    "list_saliency": "dcsm_lightning.saliency",
    "method_name": "dcsm_lightning.segmentation.labels",
    "select_candidates": "dcsm_lightning.saliency",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dcsm_lightning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
