"""Fully connected CRF refinement (Shimoda & Yanai 2016, Sec. 3.4, Eq. 6-8).

Three doors onto one implementation:

* :func:`dense_crf` - one image, probabilities of L labels -> label indices.
* :func:`crf_labels_from_maps` - one image's class maps -> dataset label ids (Eq. 7 + CRF).
* :class:`DenseCRF` - a Lightning callback adding ``"<name>+crf"`` masks to step outputs,
  one image per worker process.
"""

from dcsm_lightning.crf.callback import DenseCRF
from dcsm_lightning.crf.inference import crf_labels_from_maps, dense_crf

__all__ = ["DenseCRF", "crf_labels_from_maps", "dense_crf"]
