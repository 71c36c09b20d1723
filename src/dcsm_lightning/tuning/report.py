"""What ``tune`` writes: ``tuned.yaml`` (a config fragment) and the table of default vs tuned.

``tuned.yaml`` sets the model's segmentation (``model.init_args.segmentation``: its
``saliency``, every strategy with its chosen init arguments, and ``min_candidates``; its other
options stay as the config before it gives them) and the ``DenseCRF`` callback's settings, so
``compare``, ``pseudo-labels`` and ``predict`` take it after the classifier's config:
``--config configs/synthetic.yaml --config tuned.yaml``. It replaces ``trainer.callbacks``
(with the one DenseCRF), so it is meant for those commands, not for ``fit``.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import yaml

from dcsm_lightning.crf import CRFSettings, DenseCRF
from dcsm_lightning.files import save_text
from dcsm_lightning.saliency.options import strategy_config, with_options
from dcsm_lightning.segmentation.callback import SaliencySegmentation
from dcsm_lightning.tuning.grid import Grid, Setting
from dcsm_lightning.tuning.search import _describe
from dcsm_lightning.tuning.tune import Tuning

__all__ = ["edge_notes", "table_lines", "tuned_config", "write_tuning"]


def tuned_config(tuning: Tuning, suffix: str = "") -> dict[str, Any]:
    """The config fragment of ``tuned.yaml`` as a dict (see the module docstring); ``suffix``
    is appended to every strategy's name (``dcsm_tuned``: default and tuned rows can then
    stand in one comparison)."""
    crf = {f.name: getattr(tuning.crf, f.name) for f in fields(CRFSettings)}
    strategies = [
        with_options(s.strategy, name=s.strategy.name + suffix) if suffix else s.strategy
        for s in tuning.strategies
    ]
    segmentation = {
        "class_path": _class_path(SaliencySegmentation),
        "init_args": {
            "saliency": [strategy_config(s) for s in strategies],
            "min_candidates": tuning.min_candidates,
        },
    }
    return {
        "model": {"init_args": {"segmentation": segmentation}},
        "trainer": {
            "callbacks": [{"class_path": _class_path(DenseCRF), "init_args": {"settings": crf}}]
        },
    }


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _changes(setting: Setting, default: Setting) -> str:
    before = dict(default)
    changed = tuple((k, v) for k, v in setting if before.get(k) != v)
    return _describe(changed) if changed else "(as configured)"


def edge_notes(grid: Grid, best: Setting) -> list[str]:
    """What the table says of the knobs whose chosen value is at the grid's edge
    (:meth:`~dcsm_lightning.tuning.grid.Grid.edges`): a knob that may grow was grown as far
    as the search grows it, a budget (:attr:`~dcsm_lightning.tuning.grid.Knob.grows_up`
    False) at its largest value was never grown."""
    values = dict(best)
    found = grid.edges(values)
    budget = [
        name
        for name in found
        if not grid.knob(name).grows_up and values[name] == max(grid.knob(name).values)
    ]
    edges = [name for name in found if name not in budget]
    notes = []
    if edges:
        notes.append(f"STILL AT THE GRID'S EDGE: {', '.join(edges)} (the best may lie beyond)")
    if budget:
        notes.append(
            f"{', '.join(budget)} at the largest value (a budget, never grown: configure a "
            "larger value to try it)"
        )
    return notes


def table_lines(tuning: Tuning, source: str) -> list[str]:
    """The Markdown table (mIoU % on the tuning images, default vs tuned, with the
    cross-validated estimate) and the notes on the grid's edges."""
    lines = [
        f"Tuning images: {source} ({tuning.images} images); mIoU % on them.",
        "",
        "| strategy | setting | mIoU | + CRF | + CRF, cross-validated |",
        "|---|---|---:|---:|---:|",
    ]
    for item in tuning.strategies:
        validation = item.cross_validation
        folds = "-" if validation is None else _pct(validation.miou)
        default = item.default_scores
        lines.append(
            f"| {item.name} | default: {_describe(item.default)} | "
            f"{_pct(default.miou(crf=False))} | {_pct(default.miou())} | - |"
        )
        lines.append(
            f"| {item.name} | tuned: {_changes(item.search.best, item.default)} | "
            f"{_pct(item.tuned_scores.miou(crf=False))} | {_pct(item.tuned_scores.miou())} | "
            f"{folds} |"
        )
    lines.append("")
    for item in tuning.strategies:
        note = f"{item.name}: {len(item.search.scored)} settings scored"
        if item.extended:
            note += f"; grid extended past its edge for {', '.join(item.extended)}"
        lines.append("; ".join([f"- {note}", *edge_notes(item.grid, item.search.best)]))
    first = tuning.strategies[0].name if tuning.strategies else "-"
    lines += [
        f"- N (min_candidates) and the CRF were chosen for {first} and are shared by every "
        "strategy.",
        "- cross-validated: the best of the scored settings picked on k-1 folds of the tuning "
        "images and scored on the held-out fold (pooled over the folds).",
        f"- chosen CRF: {asdict(tuning.crf)}",
        f"- time: {tuning.seconds:.0f} s",
    ]
    return lines


def write_tuning(
    tuning: Tuning,
    output_dir: str | Path,
    source: str,
    command: str,
    overwrite: bool = False,
    suffix: str = "",
) -> dict[str, Path]:
    """Write ``tuned.yaml`` (names with ``suffix``) and ``tuning.md`` (the table) into
    ``output_dir``.

    Raises:
        FileExistsError: a file exists and ``overwrite`` is False (as the library's writers).
    """
    out = Path(output_dir)
    header = (
        f"# Written by `{command}`.\n# Chosen on {source} ({tuning.images} labelled images), "
        "never on val. Use after the classifier's config:\n#   dcsm-lightning compare | "
        "pseudo-labels | predict --config <config> --config tuned.yaml ...\n# (it replaces "
        "trainer.callbacks with this DenseCRF: not meant for fit)\n"
    )
    text = header + yaml.safe_dump(tuned_config(tuning, suffix), sort_keys=False)
    table = "\n".join(
        ["# dcsm-lightning tune", "", f"`{command}`", "", *table_lines(tuning, source)]
    )
    paths = {"config": out / "tuned.yaml", "table": out / "tuning.md"}
    save_text(paths["config"], text, overwrite=overwrite)
    save_text(paths["table"], table + "\n", overwrite=overwrite)
    return paths
