"""How many labelled images does `tune` need? The val mIoU of the setting chosen from each count.

    python benchmarks/few_masks.py --config configs/synthetic.yaml --ckpt_path CKPT \\
        --output_dir runs/few_masks [--extra_config configs/data/glyphs.yaml] \\
        [--counts 5 10 20 50] [--draws 3] [--pool 50]

A pool of ``--pool`` TRAIN images is drawn (seed 0, as ``tune --num_images`` draws); for each
count and draw, ``count`` images are drawn from the pool (seed = the draw) and the search of
``dcsm-lightning tune`` (:func:`~dcsm_lightning.tuning.tune.search_with_edges`, the default
DCSM grid) runs on them alone: only those images are scored (a search's cost grows with its
images, so the small counts are cheap). Each chosen setting is then scored on the whole val
split (the only place val is read, after every choice is made). Writes ``few_masks.md``: per
count, the val mIoU + CRF (mean +/- std over the draws) beside the paper's defaults, and the
time each phase took.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reproduction.parts import build_parts  # noqa: E402

from dcsm_lightning.app.error_report import run_command  # noqa: E402
from dcsm_lightning.app.trainer import load_weights  # noqa: E402
from dcsm_lightning.crf import CRFSettings, DenseCRF  # noqa: E402
from dcsm_lightning.errors import UserError  # noqa: E402
from dcsm_lightning.files import save_text  # noqa: E402
from dcsm_lightning.tuning.grid import (  # noqa: E402
    Grid,
    Knob,
    Setting,
    default_grid,
    start_setting,
)
from dcsm_lightning.tuning.images import draw_indices, split_loader, tuning_loader  # noqa: E402
from dcsm_lightning.tuning.maps import TuningImages  # noqa: E402
from dcsm_lightning.tuning.search import _describe  # noqa: E402
from dcsm_lightning.tuning.tune import (  # noqa: E402
    candidate_rule,
    search_with_edges,
    strategy_evaluator,
    with_concrete_layers,
)

#: Each draw's choice, written as it is made: a rerun with the same arguments resumes.
CHOICES = "choices.json"


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _load_choices(path: Path, run: dict[str, Any]) -> dict[str, tuple[Setting, str]]:
    """``"count/draw"`` -> (the chosen setting, its time line) of an earlier run.

    Raises:
        UserError: ``path`` was written by a run with other configs, checkpoint or pool.
    """
    if not path.is_file():
        return {}
    saved = json.loads(path.read_text())
    if saved["run"] != run:
        raise UserError(
            f"{path} holds the choices of another run ({saved['run']})",
            "give another --output_dir (or delete the file to start over)",
        )
    return {k: (_tuples(setting), line) for k, (setting, line) in saved["choices"].items()}


def _save_choices(path: Path, run: dict[str, Any], done: dict[str, tuple[Setting, str]]) -> None:
    text = json.dumps(
        {"run": run, "choices": {k: [list(s), line] for k, (s, line) in done.items()}}
    )
    save_text(path, text + "\n", overwrite=True)


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
    configs = [args.config, *args.extra_config]
    model, datamodule = build_parts(configs, ["--model.segmentation.saliency=dcsm"])
    load_weights(model, args.ckpt_path)
    model.eval()
    segmentation = model.segmentation
    strategy, crf = with_concrete_layers(segmentation.strategies[0], model), CRFSettings()
    top_up = candidate_rule(segmentation).min_candidates
    grid = default_grid(strategy, top_up, crf)
    start = start_setting(grid, strategy, top_up, crf)
    refiner = DenseCRF()
    _, line = tuning_loader(datamodule, args.pool, 0)  # the line naming the pool
    pool = draw_indices(len(datamodule.dataset("train")), args.pool, 0)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = {"configs": configs, "ckpt_path": args.ckpt_path, "pool": args.pool}
    done = _load_choices(out / CHOICES, run)
    chosen: dict[int, list] = {}
    phases: list[str] = []
    for count in args.counts:
        draws = 1 if count >= len(pool) else args.draws
        for draw in range(draws):
            if f"{count}/{draw}" in done:  # chosen by an earlier (interrupted) run
                setting, phase = done[f"{count}/{draw}"]
                chosen.setdefault(count, []).append(setting)
                phases.append(f"{phase} (an earlier run)")
                continue
            began = time.perf_counter()
            subset = [pool[i] for i in draw_indices(len(pool), count, draw)]
            images = TuningImages.collect(model, split_loader(datamodule, "train", subset))
            score = strategy_evaluator(strategy, model, segmentation, images, grid, crf, refiner)
            result, _, _ = search_with_edges(
                grid, start, lambda s, f=score: f(s).miou(), prefetch=score.prefetch
            )
            chosen.setdefault(count, []).append(result.best)
            seconds = time.perf_counter() - began
            phases.append(
                f"{count} images, draw {draw}: {len(set(result.scored))} settings scored, "
                f"{seconds:.0f} s"
            )
            print(f"{phases[-1]}: {_describe(result.best)}", flush=True)
            done[f"{count}/{draw}"] = (result.best, phases[-1])
            _save_choices(out / CHOICES, run, done)
    # val: read only now, every choice made
    began = time.perf_counter()
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
    scored_val = {s: val(s) for s in settings}
    phases.append(
        f"val: {len(settings)} settings on {n_val} images, {time.perf_counter() - began:.0f} s"
    )
    lines = [
        "# How many labelled images `tune` needs",
        "",
        f"`{' '.join(sys.argv)}`",
        "",
        f"Pool: {line}; val: {'the first' if args.val_limit else 'all'} {n_val} images. "
        "mIoU % on val (+ CRF / without), mean +/- std over the draws.",
        "",
        "| labelled images | draws | val DCSM + CRF | val DCSM |",
        "|---:|---:|---:|---:|",
        f"| 0 (paper defaults) | - | {100 * default.miou():.1f} | "
        f"{100 * default.miou(crf=False):.1f} |",
    ]
    for count, picks in chosen.items():
        crf_scores = [100 * scored_val[s].miou() for s in picks]
        plain = [100 * scored_val[s].miou(crf=False) for s in picks]
        lines.append(
            f"| {count} | {len(picks)} | {statistics.mean(crf_scores):.1f}{_spread(crf_scores)} | "
            f"{statistics.mean(plain):.1f}{_spread(plain)} |"
        )
    lines += ["", "Chosen settings (val DCSM + CRF / without, %):", ""]
    for count, picks in chosen.items():
        lines += [
            f"- {count}: {_describe(s)} ({100 * scored_val[s].miou():.1f} / "
            f"{100 * scored_val[s].miou(crf=False):.1f})"
            for s in picks
        ]
    cores = len(os.sched_getaffinity(0))
    lines += ["", f"Time: {(time.perf_counter() - start_time) / 60:.1f} min on {cores} cores:", ""]
    lines += [f"- {phase}" for phase in phases]
    refiner.close()
    save_text(out / "few_masks.md", "\n".join(lines) + "\n", overwrite=True)
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(run_command(main))
