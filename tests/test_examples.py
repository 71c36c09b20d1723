"""The examples run: someone else's module end to end, and the Python API on one image file."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script: str, *args: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_foreign_module_glue_is_short_and_gives_table_and_masks(tmp_path):
    source = (EXAMPLES / "foreign_module.py").read_text()
    glue = source.split("# --- glue:")[1].split("# --- glue end")[0].splitlines()[1:]
    code = [line for line in glue if line.strip() and not line.strip().startswith("#")]
    stated = int(re.search(r"# --- glue: (\d+) lines", source)[1])
    assert len(code) == stated <= 10
    assert f"markers is {stated} lines" in source  # the docstring says the same

    tiny = ["--num_train", "16", "--num_val", "8", "--size", "64", "--epochs", "1"]
    out = _run("foreign_module.py", "--out", str(tmp_path / "out"), *tiny, cwd=tmp_path)
    assert "| dcsm+crf |" in out
    rows = list(csv.DictReader((tmp_path / "out" / "report" / "comparison.csv").open()))
    assert [r["method"] for r in rows] == ["dcsm", "dcsm+crf", "simonyan", "simonyan+crf"]
    masks = sorted((tmp_path / "out" / "predictions" / "masks").glob("*.png"))
    assert [p.name for p in masks] == [f"0_{i}.png" for i in range(8)]  # ids from the index
    assert np.asarray(Image.open(masks[0])).shape == (64, 64)
    assert list((tmp_path / "out" / "predictions" / "overlays").glob("*.png"))


def test_python_api_writes_heatmap_and_overlay(tmp_path):
    rng = np.random.default_rng(0)
    photo = tmp_path / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(photo)
    out = _run("python_api.py", str(photo), "--out", str(tmp_path / "out"), cwd=tmp_path)
    written = [Path(line) for line in out.split()]
    assert [p.name for p in written][1] == "overlay.png"
    assert written[0].name.startswith("heatmap_class_")
    for path in written:
        assert np.asarray(Image.open(path)).shape == (40, 56, 3)  # the file's own size
    assert len(np.unique(np.asarray(Image.open(written[0])).reshape(-1, 3), axis=0)) > 1
