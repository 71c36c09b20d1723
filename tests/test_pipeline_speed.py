"""benchmarks/pipeline_speed.py on tiny sizes: every stage, both CRF pools, memory, RSS lines."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "pipeline_speed.py"


def test_reports_stages_crf_pools_memory_and_predict_rss():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--small_images", "4", "--large_images", "1",
         "--large_size", "280", "--predict_images", "12", "--resume_images", "8",
         "--before_src", str(SCRIPT.parents[1] / "src")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for stage in ("classify", "maps", "mask", "files"):
        assert len(re.findall(rf"{stage} \d+\.\d{{4}}", out)) == 2  # both configurations
    assert len(re.findall(r"crf workers=0 \d+\.\d+ \| workers=\d+ \d+\.\d+ -> speed-up", out)) == 2
    assert len(re.findall(r"peak memory: process \d+ MiB", out)) == 2
    assert re.search(r"RSS after 12 images: \d+ MiB", out)  # the last count written
    assert "vgg16 (weights=None), 280 x 280" in out
    rows = re.findall(r"\| (vgg_small 96|vgg16 280) px \| (\d+\.\d{4}) \| (\d+\.\d{4}) \| \d", out)
    assert [r[0] for r in rows] == ["vgg_small 96", "vgg16 280"]  # before and after, both
    assert all(float(before) > 0 and float(after) > 0 for _, before, after in rows)
    resume = re.search(r"8 images at 96 px.*first (\d+\.\d+) s/image, rerun (\d+\.\d+)", out)
    assert resume and float(resume[2]) < float(resume[1])  # the rerun skips the finished images
