"""dcsm-lightning: weakly supervised semantic segmentation from distinct class-specific
saliency maps (Shimoda & Yanai, ECCV 2016) for PyTorch Lightning."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dcsm-lightning")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
