"""A table's files: ``<name>.md``, ``<name>.csv``, ``<name>_per_class.csv`` and ``<name>.png``.

Numbers in Markdown are mIoU in % with one decimal; in the CSVs raw IoUs in [0, 1] (the paper's
figures divided by 100), empty where there is no value. The per-class CSV and the chart use the
library's helpers (:func:`~dcsm_lightning.outputs.report.format_csv`; the chart: bars of
:func:`~dcsm_lightning.outputs.charts.render_miou_chart`, or for a table that sweeps a knob,
lines of :func:`~dcsm_lightning.outputs.charts.sweep_chart_figure`).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dcsm_lightning.files import atomic_path, save_text
from dcsm_lightning.outputs.canvas import figure_png
from dcsm_lightning.outputs.charts import render_miou_chart, sweep_chart_figure
from dcsm_lightning.outputs.report import format_csv
from dcsm_lightning.segmentation.labels import method_name


@dataclass
class RowResult:
    """One row's mIoU in [0, 1] per checkpoint, without (``plain``) and with the CRF.

    ``per_class_plain`` / ``per_class_crf``: the first checkpoint's K + 1 IoUs.
    ``paper_plain`` / ``paper_crf``: the paper's mIoU in %, or None.
    ``point``: ``(line, knob value)`` in its table's sweep, or None.
    """

    label: str
    plain: list[float]
    crf: list[float]
    per_class_plain: list[float]
    per_class_crf: list[float]
    paper_plain: float | None = None
    paper_crf: float | None = None
    point: tuple[str, float] | None = None


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for fewer than 2 values)."""
    mean = statistics.fmean(values) if values else math.nan
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return mean, std


def _pct(value: float | None, std: float = math.nan) -> str:
    if value is None or math.isnan(value):
        return "–"
    text = f"{100 * value:.1f}"
    return text if math.isnan(std) else f"{text} ± {100 * std:.1f}"


def _paper(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def best_line(rows: Sequence[RowResult], prefix: str = "") -> str:
    """``best here (+CRF): <label> x.x; paper's best: <label> y.y`` over ``rows``."""
    ours = max(rows, key=lambda r: mean_std(r.crf)[0])
    text = f"{prefix}best here (+CRF): {ours.label} {_pct(mean_std(ours.crf)[0])}"
    papers = [r for r in rows if r.paper_crf is not None]
    if papers:
        paper = max(papers, key=lambda r: r.paper_crf)
        text += f"; paper's best: {paper.label} {_paper(paper.paper_crf)}"
    return text


def markdown(
    title: str, notes: Sequence[str], rows: Sequence[RowResult], best: Sequence[str]
) -> str:
    """The table as Markdown: a heading, notes, the table, the best settings."""
    checkpoints = max(len(r.crf) for r in rows)
    with_plain_paper = any(r.paper_plain is not None for r in rows)
    spread = f" (mean ± std over {checkpoints} classifiers)" if checkpoints > 1 else ""
    header = ["setting", f"mIoU{spread}", f"+ CRF{spread}"]
    header += ["paper w/o CRF"] if with_plain_paper else []
    header += ["paper + CRF"]
    header += ["+ CRF per classifier"] if checkpoints > 1 else []
    lines = [f"### {title}", "", *(f"- {n}" for n in notes), ""]
    lines += ["| " + " | ".join(header) + " |", "|:---" + "|---:" * (len(header) - 1) + "|"]
    for r in rows:
        cells = [r.label, _pct(*mean_std(r.plain)), _pct(*mean_std(r.crf))]
        cells += [_paper(r.paper_plain)] if with_plain_paper else []
        cells += [_paper(r.paper_crf)]
        cells += [", ".join(_pct(v) for v in r.crf)] if checkpoints > 1 else []
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *(f"{b}." for b in best), ""]
    return "\n".join(lines)


def table_csv(table: str, rows: Sequence[RowResult]) -> str:
    """One line per row: means, standard deviations, number of classifiers, the paper's."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["table", "setting", "miou", "miou_std", "miou_crf", "miou_crf_std", "classifiers",
         "paper_miou", "paper_miou_crf"]
    )  # fmt: skip
    for r in rows:
        plain, crf = mean_std(r.plain), mean_std(r.crf)
        values = [*plain, *crf, len(r.crf)]
        values += [None if p is None else round(p / 100, 6) for p in (r.paper_plain, r.paper_crf)]
        cells = [
            "" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(v) for v in values
        ]
        writer.writerow([table, r.label, *cells])
    return buffer.getvalue()


def sweep_png(rows: Sequence[RowResult], knob: str, title: str) -> bytes:
    """The line plot of a sweep: x = ``knob``, a line per strategy without and with the CRF
    (mean over classifiers), the paper's figures as hollow markers; rows without a ``point``
    are left out."""
    series: dict[str, dict[float, float]] = {}
    reference: dict[str, dict[float, float]] = {}
    for r in rows:
        if r.point is None:
            continue
        line, x = r.point
        for name, values, paper in (
            (method_name(line), r.plain, r.paper_plain),
            (method_name(line, "crf"), r.crf, r.paper_crf),
        ):
            series.setdefault(name, {})[x] = mean_std(values)[0]
            if paper is not None:
                reference.setdefault(name, {})[x] = paper / 100
    return figure_png(sweep_chart_figure(series, knob, title, reference))


def write_table(
    out_dir: Path,
    name: str,
    title: str,
    notes: Sequence[str],
    rows: Sequence[RowResult],
    label_names: Sequence[str],
    best: Sequence[str],
    extra_markdown: str = "",
    knob: str | None = None,
) -> dict[str, Path]:
    """Write the table's four files atomically; returns their paths by suffix.

    Args:
        out_dir: the study's output folder.
        name: file stem (``table1``).
        title, notes, best: the Markdown heading, bullet notes and closing lines.
        rows: the rows, in order.
        label_names: the K + 1 label names (background first), the per-class CSV's columns.
        extra_markdown: appended after the table (e.g. a search grid).
        knob: the knob the rows sweep (their ``point``): the chart is :func:`sweep_png`'s
            lines instead of bars.
    """
    results, first, reference, spread = {}, {}, {}, {}
    for r in rows:
        crf_name = method_name(r.label, "crf")
        results[r.label] = {"miou": mean_std(r.plain)[0]}
        results[crf_name] = {"miou": mean_std(r.crf)[0]}
        first[r.label] = {"miou": r.plain[0], "per_class": r.per_class_plain}
        first[crf_name] = {"miou": r.crf[0], "per_class": r.per_class_crf}
        if r.paper_plain is not None:
            reference[r.label] = r.paper_plain / 100
        if r.paper_crf is not None:
            reference[crf_name] = r.paper_crf / 100
        if len(r.crf) > 1:
            spread[r.label], spread[crf_name] = mean_std(r.plain)[1], mean_std(r.crf)[1]
    contents: dict[str, str | bytes] = {
        ".md": markdown(title, notes, rows, best) + extra_markdown,
        ".csv": table_csv(name, rows),
        "_per_class.csv": format_csv(first, label_names),  # the first classifier's
        ".png": sweep_png(rows, knob, title)
        if knob
        else render_miou_chart(
            results, reference, spread or None, title=title, reference_label="paper"
        ),
    }
    paths = {}
    for suffix, content in contents.items():
        path = out_dir / f"{name}{suffix}"
        if isinstance(content, bytes):
            with atomic_path(path, overwrite=True) as tmp:
                tmp.write_bytes(content)
        else:
            save_text(path, content, overwrite=True)
        paths[suffix] = path
    return paths
