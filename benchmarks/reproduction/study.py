"""The study's runner: classifiers, loaders and the cached evaluations, tables in turn.

Every (classifier, split, setting) is evaluated in one pass that scores all the CRF variants
any requested table needs of it (its maps feed every CRF row; which those are:
:mod:`.planner`). Results go to the cache first, tables are made from the cache
(:mod:`.report` writes them), so a rerun after an interruption recomputes nothing finished.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from dcsm_lightning import CRFSettings, SaliencySegmentation
from dcsm_lightning.crf.settings import resolve_backend
from dcsm_lightning.tuning import tune_segmentation
from dcsm_lightning.tuning.tune import with_concrete_layers

from .evaluate import Result, ResultCache, crf_key, evaluate_setting
from .output import RowResult
from .parts import (
    build_parts,
    checkpoint_id,
    holdout_indices,
    load_weights,
    split_loader,
    train_classifier,
)
from .planner import PAPER_CRF, holdout_spec, paper_specs, plan, table_indices
from .report import StudyReport
from .tables import ALPHAS, BILATERAL_WEIGHTS, HOLDOUT, Setting, dcsm


class Study:
    """The reproduction study of ``benchmarks/reproduce.py`` (see its docstring).

    Args:
        args: the script's options; overrides: config keys for LightningCLI.
        out: the output folder; command: the command line, for the report.
    """

    def __init__(
        self, args: argparse.Namespace, overrides: Sequence[str], out: Path, command: str
    ) -> None:
        self.args, self.overrides, self.out, self.command = args, list(overrides), out, command
        self.model, self.datamodule = build_parts(args.config, overrides)
        device = args.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(device).eval()
        self.crf_backend = resolve_backend(args.crf_backend, device)
        self.class_names = list(self.datamodule.class_names)
        self.report = StudyReport(out, command, self.class_names, self.log)
        self.cache = ResultCache(out / "results.json")
        self.data_id = json.dumps(dict(self.datamodule.hparams), default=str, sort_keys=True)
        n_val = len(self.datamodule.dataset("val"))
        limit = min(args.limit, n_val)
        self.indices = {"val": list(range(limit))}
        self.split_notes = self.report.split_notes
        self.split_notes["val"] = (
            f"val: all {n_val} images"
            if limit == n_val
            else f"val: A SUBSET, the first {limit} of {n_val} images (--limit {args.limit})"
        )
        self.checkpoints, self.mean_ap = self.report.checkpoints, self.report.mean_ap
        self.loaded: int | None = None
        self.loaders: dict[str, torch.utils.data.DataLoader] = {}
        self.progress = [0, 0]  # evaluations done, planned
        self.seconds: list[float] = []
        self.log(self.split_notes["val"])

    @staticmethod
    def log(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    # -- classifiers and data -----------------------------------------------------------------

    def prepare_checkpoints(self) -> None:
        """The given checkpoints, or train ``--train_seeds`` classifiers (kept if done)."""
        self.checkpoints += [str(path) for path in self.args.ckpt_path]  # read by the script
        for seed in range(self.args.train_seeds):
            path = self.out / "classifiers" / f"seed{seed}.ckpt"
            if path.is_file():
                self.log(f"classifier seed {seed}: {path} exists (trained earlier), reused")
            else:
                self.log(f"training classifier seed {seed} with dcsm-lightning fit ...")
                start = time.perf_counter()
                train_classifier(self.args.config, self.overrides, seed, path)
                self.log(f"classifier seed {seed}: {path} ({time.perf_counter() - start:.0f} s)")
            self.checkpoints.append(str(path))

    def loader(self, split: str) -> torch.utils.data.DataLoader:
        if split not in self.loaders:
            if split == HOLDOUT:
                n_train = len(self.datamodule.dataset("train"))
                chosen = holdout_indices(n_train, self.args.holdout, self.args.holdout_seed)
                self.indices[HOLDOUT] = chosen
                self.split_notes[HOLDOUT] = (
                    f"hold-out: {len(chosen)} of the {n_train} TRAIN images, drawn with seed "
                    f"{self.args.holdout_seed} (never val)"
                )
            role = "train" if split == HOLDOUT else split
            self.loaders[split] = split_loader(self.datamodule, role, self.indices[split])
        return self.loaders[split]

    # -- evaluation ---------------------------------------------------------------------------

    def _context(self, index: int, split: str) -> str:
        self.loader(split)
        ckpt = checkpoint_id(self.checkpoints[index])
        context = [ckpt, split, self.indices[split], self.data_id]
        if self.crf_backend != "pydensecrf":  # pydensecrf results keep their earlier keys
            context.append(f"crf backend {self.crf_backend}")
        return json.dumps(context)

    def missing(
        self, index: int, split: str, setting: Setting, crfs: Sequence[CRFSettings]
    ) -> bool:
        context = self._context(index, split)
        return any(self.cache.get(context, setting, c) is None for c in (None, *crfs))

    def results(
        self, index: int, split: str, setting: Setting, crfs: Sequence[CRFSettings], label: str
    ) -> dict[str, Result]:
        """``crf_key -> result`` of one setting on one classifier and split (cached)."""
        context = self._context(index, split)
        if self.missing(index, split, setting, crfs):
            if self.loaded != index:
                load_weights(self.model, self.checkpoints[index])
                self.loaded = index
            self.progress[0] += 1
            done, planned = self.progress
            loader = self.loader(split)
            self.log(
                f"({done}/{planned}) {label} | {split}, {len(loader.dataset)} images | "
                f"classifier {index + 1}/{len(self.checkpoints)} | CRF variants: {len(crfs)}"
            )
            computed = evaluate_setting(
                self.model, loader, setting, self.class_names, crfs, self.args.crf_workers,
                progress=self.log, crf_backend=self.crf_backend,
            )  # fmt: skip
            self.cache.put_all(context, setting, computed)
            self.seconds.append(computed["none"]["seconds"])
            eta = (planned - done) * sum(self.seconds) / len(self.seconds)
            self.log(
                f"    mIoU {100 * computed['none']['miou']:.1f}, + CRF "
                f"{100 * computed[crf_key(crfs[0])]['miou']:.1f} ({self.seconds[-1]:.0f} s; "
                f"about {eta / 60:.1f} min left)"
            )
        found = {crf_key(c): self.cache.get(context, setting, c) for c in (None, *crfs)}
        if split == "val" and found["none"]["mAP"] is not None:
            self.mean_ap.setdefault(index, found["none"]["mAP"])
        return found  # type: ignore[return-value]

    # -- the tables ---------------------------------------------------------------------------

    def holdout_grid(self) -> dict[float, dict[str, Result]]:
        """alpha -> crf_key -> hold-out mIoU, for every alpha and bilateral weight.

        The package's search does it (:func:`~dcsm_lightning.tuning.tune_segmentation`, as
        ``dcsm-lightning tune``): exhaustive over this 6 x 6 grid, the paper's other settings
        held, maps once per image for every alpha and the CRF variants in the worker pool.
        """
        loader = self.loader(HOLDOUT)
        if self.loaded != 0:
            load_weights(self.model, self.checkpoints[0])
            self.loaded = 0
        strategy = with_concrete_layers(dcsm().build(), self.model)
        segmentation = SaliencySegmentation(strategy, self.class_names, log_panels=False)
        held = {
            "layers": (strategy.layers,),
            "scales": (strategy.scales,),
            "min_candidates": (segmentation.source.candidates.min_candidates,),
            **{
                k: (getattr(PAPER_CRF, k),)
                for k in ("bilateral_sxy", "bilateral_srgb", "iterations")
            },
        }
        self.log(f"hold-out search: alpha x w1 on {len(loader.dataset)} TRAIN images")
        tuning = tune_segmentation(
            self.model, segmentation, PAPER_CRF, loader, folds=0,
            crf_workers=self.args.crf_workers, progress=self.log, extend=False,
            grid_values={"alpha": ALPHAS, "bilateral_compat": BILATERAL_WEIGHTS, **held},
        )  # fmt: skip
        grid: dict[float, dict[str, Result]] = {}
        for setting, scores in tuning.strategies[0].scores.items():
            values = dict(setting)
            crf = CRFSettings(bilateral_compat=values["bilateral_compat"])
            row = grid.setdefault(values["alpha"], {"none": {"miou": scores.miou(crf=False)}})
            row[crf_key(crf)] = {"miou": scores.miou()}
        return grid

    def run(self, tables: Sequence[str]) -> None:
        """Evaluate and write each table in turn (the hold-out search first, when asked)."""
        specs, extra = paper_specs(tables), {}
        if HOLDOUT in tables:
            grid = self.holdout_grid()
            specs[HOLDOUT], extra[HOLDOUT] = holdout_spec(grid, self.split_notes[HOLDOUT])
            self.report.write_holdout_chart(grid)
        settings, merged = plan(specs, len(self.checkpoints))
        self.progress[1] += sum(
            self.missing(key[0], "val", setting, merged[key]) for key, setting in settings.items()
        )
        for table in tables:
            indices = table_indices(table, len(self.checkpoints))
            rows = []
            for row, crf in specs[table]:
                per = [
                    self.results(i, "val", row.setting, merged[(i, row.setting.key())], row.label)
                    for i in indices
                ]
                rows.append(
                    RowResult(
                        row.label,
                        [p["none"]["miou"] for p in per],
                        [p[crf_key(crf)]["miou"] for p in per],
                        per[0]["none"]["per_class"],
                        per[0][crf_key(crf)]["per_class"],
                        row.paper_plain,
                        row.paper_crf,
                        row.point,
                    )
                )
            self.report.write(table, rows, extra.get(table, ""), indices)

    def finish(self, trained: float, total: float) -> None:
        cores = len(os.sched_getaffinity(0))
        evaluations = len(self.seconds)
        self.report.write_report(
            f"This run: {total / 60:.1f} min on {cores} cores ({trained / 60:.1f} min training, "
            f"{evaluations} settings evaluated, the rest read from results.json)."
        )
        for i, mean_ap in sorted(self.mean_ap.items()):
            self.log(f"classifier {i + 1}: mAP {mean_ap:.3f} on the val images used")
