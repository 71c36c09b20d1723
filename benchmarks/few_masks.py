"""How many labelled images does `tune` need? The val mIoU of the setting chosen from each count.

    python benchmarks/few_masks.py --config configs/synthetic.yaml --ckpt_path CKPT \\
        --output_dir runs/few_masks [--extra_config configs/data/glyphs.yaml] \\
        [--counts 5 10 20 50] [--draws 3] [--pool 50]

A pool of ``--pool`` TRAIN images (seed 0) is scored once per setting (per image, cached); for
each count and draw, ``count`` images are drawn from the pool (seed = the draw) and the search
of ``dcsm-lightning tune`` (:func:`~dcsm_lightning.tuning.tune.search_with_edges`, the default
DCSM grid) runs on them alone. Each chosen setting is then scored on the whole val split (the
only place val is read, after every choice is made). Writes ``few_masks.md``: per count, the
val mIoU + CRF (mean +/- std over the draws) beside the paper's defaults.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reproduction.parts import build_parts  # noqa: E402

from dcsm_lightning.app.error_report import run_command  # noqa: E402
from dcsm_lightning.app.trainer import load_weights  # noqa: E402
from dcsm_lightning.crf import CRFSettings, DenseCRF  # noqa: E402
from dcsm_lightning.files import save_text  # noqa: E402
from dcsm_lightning.tuning.grid import Grid, Knob, default_grid, start_setting  # noqa: E402
from dcsm_lightning.tuning.images import draw_indices, split_loader, tuning_loader  # noqa: E402
from dcsm_lightning.tuning.maps import TuningImages  # noqa: E402
from dcsm_lightning.tuning.search import _describe  # noqa: E402
from dcsm_lightning.tuning.tune import (  # noqa: E402
    candidate_rule,
    search_with_edges,
    strategy_evaluator,
    with_concrete_layers,
)


def _spread(values: list[float]) -> str:
    return f" +/- {statistics.stdev(values):.1f}" if len(values) > 1 else ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--extra_config", action="append", default=[])
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--counts", type=int, nargs="+", default=[5, 10, 20, 50])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--pool", type=int, default=50)
    parser.add_argument("--val_limit", type=int, default=0, help="first N val images (0: all)")
    args = parser.parse_args(argv)
    start_time = time.perf_counter()
    overrides = [x for c in args.extra_config for x in ("--config", c)]
    model, datamodule = build_parts(args.config, [*overrides, "--model.segmentation.saliency=dcsm"])
    load_weights(model, args.ckpt_path)
    model.eval()
    segmentation = model.segmentation
    strategy, crf = with_concrete_layers(segmentation.strategies[0], model), CRFSettings()
    top_up = candidate_rule(segmentation).min_candidates
    grid = default_grid(strategy, top_up, crf)
    start = start_setting(grid, strategy, top_up, crf)
    refiner = DenseCRF()
    loader, line = tuning_loader(datamodule, args.pool, 0)
    pool = strategy_evaluator(
        strategy, model, segmentation, TuningImages.collect(model, loader), grid, crf, refiner
    )
    chosen: dict[int, list] = {}
    for count in args.counts:
        draws = 1 if count >= args.pool else args.draws
        for draw in range(draws):
            subset = draw_indices(args.pool, count, draw)
            result, _, _ = search_with_edges(grid, start, lambda s, i=subset: pool(s).miou(i))
            chosen.setdefault(count, []).append(result.best)
            print(f"{count} images, draw {draw}: {_describe(result.best)}", flush=True)
    # val: read only now, every choice made
    n_val = len(datamodule.dataset("val"))
    n_val = min(n_val, args.val_limit) if args.val_limit else n_val
    val_images = TuningImages.collect(model, split_loader(datamodule, "val", range(n_val)))
    settings = {start, *(s for picks in chosen.values() for s in picks)}
    union = {}
    for setting in settings:
        for name, value in setting:
            union.setdefault(name, set()).add(value)
    val_grid = Grid(
        tuple(Knob(k.name, tuple(union[k.name]), k.target) for k in grid.knobs), grid.groups
    )
    val = strategy_evaluator(strategy, model, segmentation, val_images, val_grid, crf, refiner)
    default = val(start)
    lines = [
        "# How many labelled images `tune` needs",
        "",
        f"`{' '.join(sys.argv)}`",
        "",
        f"Pool: {line}; val: all {n_val} images. mIoU % on val (+ CRF / without), mean +/- "
        "std over the draws.",
        "",
        "| labelled images | draws | val DCSM + CRF | val DCSM |",
        "|---:|---:|---:|---:|",
        f"| 0 (paper defaults) | - | {100 * default.miou():.1f} | "
        f"{100 * default.miou(crf=False):.1f} |",
    ]
    for count, picks in chosen.items():
        crf_scores = [100 * val(s).miou() for s in picks]
        plain = [100 * val(s).miou(crf=False) for s in picks]
        lines.append(
            f"| {count} | {len(picks)} | {statistics.mean(crf_scores):.1f}{_spread(crf_scores)} | "
            f"{statistics.mean(plain):.1f}{_spread(plain)} |"
        )
    lines += ["", "Chosen settings:", ""]
    for count, picks in chosen.items():
        lines += [f"- {count}: {_describe(s)}" for s in picks]
    cores = len(os.sched_getaffinity(0))
    lines += ["", f"Time: {(time.perf_counter() - start_time) / 60:.1f} min on {cores} cores."]
    refiner.close()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_text(out / "few_masks.md", "\n".join(lines) + "\n", overwrite=True)
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(run_command(main))
