"""The top-level package exports the names a user starts with."""

from __future__ import annotations

import subprocess
import sys

import dcsm_lightning


def test_every_exported_name_resolves() -> None:
    for name in dcsm_lightning.__all__:
        assert getattr(dcsm_lightning, name) is not None, name
    from dcsm_lightning.segmentation.callback import SaliencySegmentation

    assert dcsm_lightning.SaliencySegmentation is SaliencySegmentation


def test_import_is_cheap() -> None:
    """``import dcsm_lightning`` does not import torch (exports load on first use)."""
    code = "import sys, dcsm_lightning; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
