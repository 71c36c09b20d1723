"""One folder per pipeline run: fit, then compare and predict of its checkpoint, leave exactly
the run folder and its subfolders; a checkpoint outside a run folder gets a folder beside it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from demo_config import SHRINK

from dcsm_lightning.app.cli import main
from dcsm_lightning.app.run_folders import default_output_dir, run_folder
from dcsm_lightning.errors import UserError

#: The shipped demo config shrunk to seconds, one strategy; its logger is kept.
QUICK = [*SHRINK, "--model.segmentation.saliency=[dcsm]"]
RUN = Path("runs", "synthetic", "version_0")
CKPT = str(RUN / "checkpoints" / "last.ckpt")
KINDS = ("masks", "heatmaps", "overlays", "scores")
#: Lightning messages the pipeline must not show (they concern a training run only).
NOISE = ("dirpath has changed", "callbacks used to create the checkpoint", "LeafSpec")


def _folders(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir()}


def test_fit_compare_predict_leave_one_run_folder(tmp_path, monkeypatch, capsys, caplog, recwarn):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO)
    main(["fit", "--config", "synthetic", *QUICK])
    assert f"--ckpt_path {CKPT}  # writes to {RUN}/compare/" in capsys.readouterr().out
    for _ in range(2):  # the second run replaces the first one's files, in the same folder
        main(["compare", "--config", "synthetic", "--ckpt_path", CKPT, *QUICK])
    main(["predict", "--config", "synthetic", "--ckpt_path", CKPT, *QUICK])
    main(["predict", "--ckpt_path", CKPT, "--images", str(RUN / "predict" / "overlays")])
    main(["validate", "--config", "synthetic", "--ckpt_path", CKPT, *QUICK])
    assert _folders(tmp_path) == {
        "runs", "runs/synthetic", str(RUN), f"{RUN}/checkpoints",
        f"{RUN}/compare",
        f"{RUN}/predict", *(f"{RUN}/predict/{kind}" for kind in KINDS),
        f"{RUN}/predict_overlays", *(f"{RUN}/predict_overlays/{kind}" for kind in KINDS),
        f"{RUN}/validate",
    }  # fmt: skip
    compare = {p.name for p in (tmp_path / RUN / "compare").iterdir()}
    assert {"comparison.md", "comparison.csv", "comparison.png", "config.yaml"} <= compare
    assert len([n for n in compare if n.startswith("events.out.tfevents")]) == 2  # its TB run
    assert len(list((tmp_path / RUN / "predict" / "masks").glob("*.png"))) == 8
    assert "Comparison written to: runs/synthetic/version_0/compare/" in capsys.readouterr().out
    shown = [str(w.message) for w in recwarn] + [caplog.text]
    assert not [text for text in shown for noise in NOISE if noise in text]
    assert "Tip:" not in caplog.text


def test_run_folder_of_a_checkpoint():
    assert run_folder("runs/x/version_3/checkpoints/best.ckpt") == Path("runs/x/version_3")
    assert run_folder("models/cats.ckpt") == Path("models/cats")  # beside it, named after it
    out = default_output_dir("runs/x/version_3/checkpoints/last.ckpt", "pseudo-labels")
    assert out == Path("runs/x/version_3/pseudo_labels")
    out = default_output_dir("models/cats.ckpt", "predict", images="photos/holiday/")
    assert out == Path("models/cats/predict_holiday")


def test_a_read_only_place_beside_the_checkpoint_is_one_line(tmp_path, monkeypatch):
    # (root may write anywhere, so the check is what is tested: it says the folder is read-only)
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(UserError, match=f"{tmp_path} is not writable"):
        default_output_dir(tmp_path / "cats.ckpt", "compare")
    (tmp_path / "sub").mkdir()  # writable: the folder beside the checkpoint is the default
    assert default_output_dir(tmp_path / "sub" / "cats.ckpt", "compare").parent.name == "cats"
