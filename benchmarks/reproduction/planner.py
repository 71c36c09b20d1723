"""The study's plan: which rows each table has, on which classifiers, and which CRF variants
each (classifier, setting) must be scored with, so that every setting's maps are made once."""

from __future__ import annotations

from collections.abc import Sequence

from dcsm_lightning import CRFSettings

from .evaluate import Result, crf_key
from .tables import ALPHAS, BILATERAL_WEIGHTS, HOLDOUT, TABLES, Row, Setting, dcsm

PAPER_CRF = CRFSettings()
Spec = list[tuple[Row, CRFSettings]]  # a table's rows, each with the CRF of its "+ CRF" column
#: (classifier index, setting key) -> what is evaluated for it
Plan = tuple[dict[tuple[int, str], Setting], dict[tuple[int, str], list[CRFSettings]]]


def table_file(table: str) -> str:
    """A table's file stem: ``table1`` ... ``table6``, ``table_holdout``."""
    return f"table{table}" if table in TABLES else f"table_{table}"


#: The tables' file stems, in report order.
TABLE_FILES = [table_file(t) for t in (*TABLES, HOLDOUT)]


def table_indices(table: str, classifiers: int) -> list[int]:
    """The classifiers a table is evaluated on: all of them, or the first."""
    everyone = table in TABLES and TABLES[table].all_checkpoints
    return list(range(classifiers)) if everyone else [0]


def paper_specs(tables: Sequence[str]) -> dict[str, Spec]:
    """The paper's tables among ``tables``, each row with the paper's CRF."""
    return {t: [(r, PAPER_CRF) for r in TABLES[t].rows] for t in tables if t in TABLES}


def plan(specs: dict[str, Spec], classifiers: int) -> Plan:
    """Every (classifier, setting) the tables need, with all the CRFs any table scores it
    with (one evaluation of its maps scores them all)."""
    merged: dict[tuple[int, str], list[CRFSettings]] = {}
    settings: dict[tuple[int, str], Setting] = {}
    for table, spec in specs.items():
        for index in table_indices(table, classifiers):
            for row, crf in spec:
                key = (index, row.setting.key())
                settings[key] = row.setting
                crfs = merged.setdefault(key, [])
                if crf not in crfs:
                    crfs.append(crf)
    return settings, merged


def holdout_spec(grid: dict[float, dict[str, Result]], note: str) -> tuple[Spec, str]:
    """The hold-out table's val rows (paper defaults, the choice) and its grid in Markdown.

    Args:
        grid: alpha -> crf_key -> hold-out mIoU (the search's).
        note: what the hold-out images are.
    """
    scores = {
        (a, w): grid[a][crf_key(CRFSettings(bilateral_compat=w))]["miou"]
        for a in ALPHAS
        for w in BILATERAL_WEIGHTS
    }
    alpha, weight = max(scores, key=lambda k: scores[k])
    lines = [
        "",
        f"Hold-out search ({note}), mIoU % + CRF by alpha (rows) and "
        f"bilateral weight w1 (columns; chart: {table_file(HOLDOUT)}_grid.png):",
        "",
        "| alpha | w/o CRF | " + " | ".join(f"w1={w:g}" for w in BILATERAL_WEIGHTS) + " |",
        "|---:" * (len(BILATERAL_WEIGHTS) + 2) + "|",
    ]
    for a in ALPHAS:
        cells = [f"{100 * grid[a]['none']['miou']:.1f}"]
        cells += [f"{100 * scores[(a, w)]:.1f}" for w in BILATERAL_WEIGHTS]
        lines.append(f"| {a:g} | " + " | ".join(cells) + " |")
    edges = [
        name
        for name, value, grid_values in (
            ("alpha", alpha, ALPHAS),
            ("w1", weight, BILATERAL_WEIGHTS),
        )
        if value in (grid_values[0], grid_values[-1])
    ]
    edge = f" ({' and '.join(edges)} at the edge of the grid)" if edges else ""
    lines += ["", f"Chosen on the hold-out: alpha = {alpha:g}, w1 = {weight:g}{edge}.", ""]
    spec = [
        (Row("paper defaults (alpha 3, w1 1)", dcsm(), 44.1), PAPER_CRF),
        (
            Row(f"chosen on hold-out (alpha {alpha:g}, w1 {weight:g})", dcsm(alpha=alpha)),
            CRFSettings(bilateral_compat=weight),
        ),
    ]
    return spec, "\n".join(lines)
