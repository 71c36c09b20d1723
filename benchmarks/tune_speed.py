"""How long ``dcsm-lightning tune`` takes: this source tree beside another, in one run.

    python benchmarks/tune_speed.py --ckpt_path CKPT [--num_images 100] [--before_src DIR] \\
        [--extra_config configs/data/glyphs.yaml] [--rounds 1] [--output_dir runs/tune_speed]

Each version runs the real command (``python -m dcsm_lightning.app.cli tune --config
configs/synthetic.yaml --model.segmentation.saliency=dcsm --num_images N``, the default DCSM
grid, CRF workers on every core; ``--all_strategies``: every strategy of the config) in its
own process; ``--before_src`` is another version's ``src/`` (e.g. ``git worktree add ../base
<commit>``), put first on ``PYTHONPATH``. Versions
alternate round by round. Prints per run the wall time, the CPU time of the command and its
CRF workers, and the settings scored, then after / before as ratios of the medians; checks that
both versions chose the same settings (a faster search must not choose differently). The load
average is printed before and after (the CPUs may be shared).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(src: Path, args: argparse.Namespace, out: Path) -> dict[str, float]:
    """One ``tune`` run with ``src`` first on the path: wall s, CPU s, settings scored."""
    configs = ["--config", args.config] + (
        ["--config", args.extra_config] if args.extra_config else []
    )
    command = [
        sys.executable, "-m", "dcsm_lightning.app.cli", "tune", *configs,
        "--ckpt_path", args.ckpt_path,
        *([] if args.all_strategies else ["--model.segmentation.saliency=dcsm"]),
        "--num_images", str(args.num_images), "--output_dir", str(out),
        "--trainer.logger=false",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(src)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"tune failed ({src}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    scored = sum(": mIoU " in line for line in done.stdout.splitlines())
    return {"wall": wall, "cpu": cpu, "scored": scored}


def _choice(out: Path) -> str:
    """tuned.yaml without its first line (the command that wrote it)."""
    return "".join((out / "tuned.yaml").read_text().splitlines(keepends=True)[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", required=True, help="a classifier checkpoint")
    parser.add_argument("--config", default="configs/synthetic.yaml")
    parser.add_argument("--extra_config", default=None, help="e.g. configs/data/glyphs.yaml")
    parser.add_argument("--num_images", type=int, default=100)
    parser.add_argument("--before_src", default=None, help="another version's src/")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--all_strategies", action="store_true",
        help="tune every strategy of the config (default: DCSM alone)",
    )  # fmt: skip
    parser.add_argument("--output_dir", default="runs/tune_speed")
    args = parser.parse_args()
    versions = ({"before": Path(args.before_src)} if args.before_src else {}) | {
        "after": ROOT / "src"
    }
    output = Path(args.output_dir)
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs", flush=True)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in versions}
    for round_ in range(args.rounds):
        for name, src in versions.items():
            result = _run(src, args, output / f"{name}_{round_}")
            runs[name].append(result)
            print(
                f"round {round_} {name}: {result['wall']:.1f} s wall, {result['cpu']:.1f} s CPU, "
                f"{result['scored']:.0f} settings scored",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()}")
    grids = "every strategy's default grid" if args.all_strategies else "the default DCSM grid"
    print(f"\n`tune`, {args.num_images} images, {grids} (medians of {args.rounds}):")
    print("| version | wall s | CPU s | settings scored |")
    print("|---|---:|---:|---:|")
    median = {
        name: {k: statistics.median(r[k] for r in results) for k in ("wall", "cpu", "scored")}
        for name, results in runs.items()
    }
    for name, m in median.items():
        print(f"| {name} | {m['wall']:.1f} | {m['cpu']:.1f} | {m['scored']:.0f} |")
    if "before" in median:
        b, a = median["before"], median["after"]
        print(f"\nafter / before: wall {a['wall'] / b['wall']:.2f}, CPU {a['cpu'] / b['cpu']:.2f}")
        same = {_choice(output / f"{name}_{r}") for name in versions for r in range(args.rounds)}
        print("same chosen settings in every run:", "yes" if len(same) == 1 else "NO")


if __name__ == "__main__":
    main()
