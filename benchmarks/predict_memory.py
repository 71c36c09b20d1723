"""The resident memory of a real ``dcsm-lightning predict`` run (DCSM + CRF, every file) as
it goes: sampled from ``/proc`` while counting the mask files written. Run by
``benchmarks/pipeline_speed.py`` (``--predict_images``)."""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def predict_rss(count: int, ckpt: str | None) -> None:
    """``dcsm-lightning predict`` over ``count`` images; RSS after 100 and after ``count``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "pred")
        cmd = [
            sys.executable, "-m", "dcsm_lightning.app.cli", "predict",
            "--config", str(ROOT / "configs" / "synthetic.yaml"),
            "--output_dir", str(out), "--model.segmentation.saliency=[DCSM]",
            f"--data.init_args.num_val={count}", "--trainer.logger=false",
            "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp}",
        ] + (["--ckpt_path", ckpt] if ckpt else [])  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        samples: list[tuple[int, float, float]] = []  # (masks written, seconds, RSS MiB)

        def watch() -> None:
            while proc.poll() is None:
                masks = out / "masks"
                written = sum(1 for _ in masks.iterdir()) if masks.is_dir() else 0
                try:
                    rss = _rss_mib(proc.pid)
                except OSError:
                    break
                if not math.isnan(rss):  # nan: the process is exiting (no VmRSS line any more)
                    samples.append((written, time.perf_counter() - start, rss))
                time.sleep(0.25)

        watcher = threading.Thread(target=watch)
        watcher.start()
        _, err = proc.communicate()
        watcher.join()
        if proc.returncode != 0:
            raise SystemExit(f"predict failed:\n{err[-3000:]}")
        wall = time.perf_counter() - start
        at_100 = next(s for s in samples if s[0] >= min(100, count))
        last = max(s for s in samples if s[0] == max(x[0] for x in samples))
        peak = max(s[2] for s in samples)
        print(f"\ndcsm-lightning predict, {count} images at 96 px (DCSM + CRF, all files):")
        print(f"  RSS after {at_100[0]} images: {at_100[2]:.0f} MiB ({at_100[1]:.0f} s)")
        print(f"  RSS after {last[0]} images: {last[2]:.0f} MiB ({last[1]:.0f} s)")
        print(f"  ratio {last[2] / at_100[2]:.3f}; peak sampled {peak:.0f} MiB; wall {wall:.0f} s")
