"""The dense CRF's parameters (:class:`CRFSettings`) and the choice of its backend.

Two backends run the same mean-field inference (Kraehenbuehl & Koltun 2011, the paper's
Eq. 6-8): ``"pydensecrf"`` (the C++ reference, CPU only, one image at a time) and ``"torch"``
(:mod:`dcsm_lightning.crf.torch_backend`: any device, a batch at once). ``"auto"`` is resolved
by :func:`resolve_backend`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["BACKENDS", "BACKEND_ENV", "CRFSettings", "check_backend", "resolve_backend"]

#: the accepted ``backend`` values
BACKENDS = ("auto", "pydensecrf", "torch")
#: environment variable that, when set, decides what ``backend="auto"`` means
BACKEND_ENV = "DCSM_LIGHTNING_CRF_BACKEND"


@dataclass(frozen=True)
class CRFSettings:
    """The dense CRF's parameters, paper defaults (Sec. 3.4): the one place they are written.

    Args:
        iterations: mean-field iterations (paper: 10); 0 gives the argmax of the unaries.
        bilateral_sxy: position scale of the appearance kernel in pixels (paper: 30).
        bilateral_srgb: colour scale of the appearance kernel in 0-255 units (paper: 10).
        bilateral_compat: weight of the appearance kernel (paper: 1).
        gaussian_sxy: position scale of the smoothness kernel in pixels (paper: 3).
        gaussian_compat: weight of the smoothness kernel (paper: 1).
        clamp: lower bound on probabilities before the log, in (0, 1] (paper: 1e-5).

    Raises:
        ValueError: a value of the wrong type or outside its range.
    """

    iterations: int = 10
    bilateral_sxy: float = 30.0
    bilateral_srgb: float = 10.0
    bilateral_compat: float = 1.0
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 1.0
    clamp: float = 1e-5

    def __post_init__(self) -> None:
        iterations = self.iterations
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise ValueError(f"Expected `iterations` to be an int >= 0, got {iterations!r}.")
        for name in ("bilateral_sxy", "bilateral_srgb", "gaussian_sxy", "clamp"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0 or not np.isfinite(value):
                raise ValueError(f"Expected `{name}` to be a finite number > 0, got {value!r}.")
        if not 0 < self.clamp <= 1:
            raise ValueError(f"Expected `clamp` in (0, 1], got {self.clamp!r}.")
        for name in ("bilateral_compat", "gaussian_compat"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ValueError(f"Expected `{name}` to be a finite number, got {value!r}.")


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`BACKENDS`, else ValueError."""
    if backend not in BACKENDS:
        raise ValueError(f"Expected `backend` among {list(BACKENDS)}, got {backend!r}.")
    return backend


def resolve_backend(backend: str, device: torch.device | str = "cpu") -> str:
    """The backend that runs: ``"pydensecrf"`` or ``"torch"``.

    ``"auto"`` means the value of the environment variable :data:`BACKEND_ENV` if it is set
    (``pydensecrf`` or ``torch``), else ``"torch"`` for data on an accelerator (CUDA, MPS, ...)
    and ``"pydensecrf"`` on the CPU, where it is the faster of the two
    (``benchmarks/crf_speed.py``) and the reference.

    Args:
        backend: ``"auto"``, ``"pydensecrf"`` or ``"torch"``.
        device: where the probabilities are.

    Raises:
        ValueError: an unknown backend, or an unknown value of :data:`BACKEND_ENV`.
    """
    if check_backend(backend) != "auto":
        return backend
    chosen = os.environ.get(BACKEND_ENV, "")
    if chosen:
        if chosen not in BACKENDS[1:]:
            raise ValueError(
                f"Expected the environment variable {BACKEND_ENV} among {list(BACKENDS[1:])}, "
                f"got {chosen!r}."
            )
        return chosen
    return "pydensecrf" if torch.device(device).type == "cpu" else "torch"
