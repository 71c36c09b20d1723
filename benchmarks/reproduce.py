"""Reproduce the paper's Tables 1-6 (and a hold-out choice of alpha and the CRF weight).

    python benchmarks/reproduce.py --config configs/synthetic.yaml [--config MORE.yaml] \\
        --ckpt_path CKPT [CKPT ...] \\
        --output_dir DIR [--tables 1,2,...,6,holdout] [--limit N] [--train_seeds N] \\
        [--data.init_args.root ...]   # any other option: a config key, as for dcsm-lightning

Every table is written as it finishes (``DIR/table<N>.md``, ``.csv``, ``_per_class.csv``,
``.png``; ``DIR/REPORT.md`` gathers them with the command and the checkpoints) beside the
paper's figures. Tables 1-5 and the hold-out use the first checkpoint; Table 6 gives mean +/- std
over all of them (classifiers trained with different seeds). With ``--train_seeds N`` and no
checkpoint, N classifiers are trained first by ``dcsm-lightning fit`` (seeds 0 .. N-1, saved in
``DIR/classifiers/``). Results are cached in ``DIR/results.json``: run the same command again
after an interruption and nothing finished is recomputed. The maps of one setting are computed
once and feed all its CRF variants.

The hold-out table chooses alpha (Eq. 5) and the CRF's bilateral weight w1 on images drawn from
the TRAIN split (never val), then reports that choice on val beside the paper's defaults.

Defaults (``--limit 200``: all 200 val images of the built-in data, a subset of larger sets,
said in the output; ``--holdout 100``) are sized to finish within 45 minutes on 2 CPU cores with
``configs/synthetic.yaml``, three classifiers' training included.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reproduction.study import Study  # noqa: E402
from reproduction.tables import ALL_TABLES  # noqa: E402

from dcsm_lightning.app.base import read_checkpoint  # noqa: E402
from dcsm_lightning.app.error_report import run_command  # noqa: E402


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The script's own options, and everything else (config keys for LightningCLI)."""
    parser = argparse.ArgumentParser(
        prog="reproduce.py",
        description=__doc__.splitlines()[0],
        epilog="Other options are config keys passed to LightningCLI (--data.init_args.root DIR).",
    )
    parser.add_argument(
        "--config",
        required=True,
        action="append",
        help="the training config (YAML); repeat it to stack configs as dcsm-lightning does",
    )
    parser.add_argument("--ckpt_path", nargs="+", default=[], help="classifier checkpoint(s)")
    parser.add_argument("--output_dir", required=True, help="where tables and results go")
    parser.add_argument(
        "--tables",
        default=",".join(ALL_TABLES),
        help="comma-separated subset of " + ",".join(ALL_TABLES),
    )
    parser.add_argument("--limit", type=int, default=200, help="evaluate the first N val images")
    parser.add_argument("--holdout", type=int, default=100, help="train images for the hold-out")
    parser.add_argument("--holdout_seed", type=int, default=0)
    parser.add_argument("--train_seeds", type=int, default=0, help="train N classifiers first")
    parser.add_argument("--crf_workers", type=int, default=None, help="default: all cores")
    parser.add_argument(
        "--crf_backend",
        default="auto",
        choices=["auto", "pydensecrf", "torch"],
        help="DenseCRF(backend=...); auto: torch on a GPU, pydensecrf on the CPU",
    )
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")
    args, rest = parser.parse_known_args(argv)
    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    unknown = [t for t in tables if t not in ALL_TABLES]
    if unknown or not tables:
        parser.error(f"--tables: unknown {unknown or tables}; choose from {','.join(ALL_TABLES)}")
    args.tables = [t for t in ALL_TABLES if t in tables]  # computed in the usual order
    if args.ckpt_path and args.train_seeds:
        parser.error("give --ckpt_path or --train_seeds, not both")
    if not args.ckpt_path and args.train_seeds < 1:
        parser.error("give --ckpt_path CKPT [CKPT ...] or --train_seeds N")
    if args.limit < 1 or args.holdout < 1:
        parser.error("--limit and --holdout must be >= 1")
    stray = [
        a
        for a in rest
        if a.startswith("-")
        and not a.startswith(("--data", "--model", "--trainer", "--seed_everything"))
    ]
    if stray:
        parser.error(
            f"unknown option {stray[0]} (config keys start with --data, --model, --trainer)"
        )
    return args, rest


def main(argv: list[str]) -> None:
    """Run the study (see the module docstring)."""
    args, overrides = parse_args(argv)
    for path in args.ckpt_path:  # before anything is built: a wrong path fails at once
        read_checkpoint(path)
    start = time.perf_counter()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/reproduce.py " + shlex.join(argv)
    print(
        f"reproduce: {command}\n  output: {out}  (cores: {len(os.sched_getaffinity(0))})",
        flush=True,
    )
    study = Study(args, overrides, out, command)
    study.prepare_checkpoints()
    trained = time.perf_counter() - start
    study.run(args.tables)
    total = time.perf_counter() - start
    study.finish(trained, total)
    print(
        f"done in {total / 60:.1f} min (training {trained / 60:.1f} min); see {out / 'REPORT.md'}"
    )


if __name__ == "__main__":
    sys.exit(run_command(main))
