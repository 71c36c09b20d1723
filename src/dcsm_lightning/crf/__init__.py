"""Fully connected CRF refinement (Shimoda & Yanai 2016, Sec. 3.4, Eq. 6-8).

One set of settings, four doors onto one implementation:

* :class:`CRFSettings` - the CRF's parameters (paper defaults).
* ``backend`` - ``"pydensecrf"`` (the C++ reference, CPU), ``"torch"`` (a permutohedral lattice
  in torch: any device, a batch at once, :func:`dense_crf_batch`) or ``"auto"``.
* :func:`dense_crf` - one image, probabilities of L labels -> label indices.
* :func:`crf_labels_from_maps` - one image's class maps -> dataset label ids (Eq. 7 + CRF).
* :func:`crf_masks` - the same for a batch, optionally in a process pool.
* :class:`DenseCRF` - a Lightning callback refining the masks of
  :class:`~dcsm_lightning.SaliencySegmentation` (``"<strategy>+crf"``).
"""

from dcsm_lightning.crf.callback import DenseCRF
from dcsm_lightning.crf.mean_field import crf_labels_from_maps, crf_masks, dense_crf
from dcsm_lightning.crf.settings import CRFSettings
from dcsm_lightning.crf.torch_backend import dense_crf_batch

__all__ = [
    "CRFSettings",
    "DenseCRF",
    "crf_labels_from_maps",
    "crf_masks",
    "dense_crf",
    "dense_crf_batch",
]
