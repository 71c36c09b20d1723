"""The method comparison: a Markdown table, a CSV and a bar chart of mIoU per method.

``results`` maps a method name (``"dcsm"``, ``"dcsm+crf"``, ``"simonyan"``, ...) to
``{"miou": float, "per_class": list of K + 1 floats}`` with IoUs in [0, 1], background
first, NaN where a class never occurred. Rows keep the order of ``results``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcsm_lightning.files import atomic_path
from dcsm_lightning.segmentation.methods import Method

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BACKGROUND = "background"
MISSING = "–"  # en dash: how the Markdown table shows NaN


def _label_names(class_names: Sequence[str], num_labels: int) -> list[str]:
    """The K + 1 column names: ``class_names`` with "background" prepended when it lacks it."""
    names = [str(n) for n in class_names]
    if len(names) == num_labels - 1:
        names = [BACKGROUND, *names]
    if len(names) != num_labels:
        raise ValueError(
            f"per_class has {num_labels} entries (background + K classes) but "
            f"{len(class_names)} class names were given: {list(class_names)}"
        )
    if len(set(names)) != len(names) or {"method", "miou"} & set(names):
        raise ValueError(f"class names must be unique and not 'method' / 'miou': {names}")
    return names


def _empty_columns(class_names: Sequence[str]) -> list[str]:
    names = [str(n) for n in class_names]
    return names if names[:1] == [BACKGROUND] else [BACKGROUND, *names]


def comparison_rows(
    results: Mapping[str, Mapping[str, Any]], class_names: Sequence[str]
) -> list[dict[str, Any]]:
    """One flat row per method: ``{"method", "miou", "background", <class>, ...}``.

    Args:
        results: method -> {"miou": float, "per_class": K + 1 floats, background first}.
        class_names: the K foreground names, or K + 1 names starting with "background".

    Returns:
        rows in the order of ``results``; values are floats in [0, 1] (NaN kept).

    Raises:
        ValueError: a method lacks "miou" / "per_class", or their lengths disagree with
            ``class_names`` or with each other.
    """
    rows: list[dict[str, Any]] = []
    columns: list[str] | None = None
    for method, result in results.items():
        if "miou" not in result or "per_class" not in result:
            raise ValueError(
                f"results[{method!r}] needs 'miou' and 'per_class', got {list(result)}"
            )
        per_class = [float(v) for v in result["per_class"]]
        names = _label_names(class_names, len(per_class))
        if columns is not None and names != columns:
            raise ValueError(
                f"results[{method!r}] has {len(per_class)} per-class values, "
                f"others have {len(columns)}"
            )
        columns = names
        row: dict[str, Any] = {"method": str(method), "miou": float(result["miou"])}
        row.update(zip(names, per_class, strict=True))
        rows.append(row)
    return rows


def _percent(value: float) -> str:
    return MISSING if math.isnan(value) else f"{100 * value:.1f}"


def format_table(results: Mapping[str, Mapping[str, Any]], class_names: Sequence[str]) -> str:
    """The comparison as a Markdown table: method, mIoU, then one column per label.

    Numbers are percentages with one decimal; NaN shows as "–".
    """
    rows = comparison_rows(results, class_names)
    names = list(rows[0])[2:] if rows else _empty_columns(class_names)
    header = ["method", "mIoU", *names]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|",
    ]
    for row in rows:
        cells = [row["method"], _percent(row["miou"]), *(_percent(row[n]) for n in names)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_csv(results: Mapping[str, Mapping[str, Any]], class_names: Sequence[str]) -> str:
    """The comparison as CSV: columns ``method, miou, background, <class>, ...``.

    Values are raw IoUs in [0, 1] written with ``repr`` (they parse back to the same
    floats); NaN is an empty cell, which pandas and spreadsheets read as missing.
    """
    rows = comparison_rows(results, class_names)
    names = list(rows[0])[2:] if rows else _empty_columns(class_names)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "miou", *names])
    for row in rows:
        values = [row["miou"], *(row[n] for n in names)]
        writer.writerow([row["method"], *("" if math.isnan(v) else repr(v) for v in values)])
    return buffer.getvalue()


def read_csv(path: str | os.PathLike) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Read a ``comparison.csv`` written by :func:`format_csv` back into ``results``.

    Returns:
        (results in the file's row order, the K + 1 label names of its columns).

    Raises:
        FileNotFoundError: no such file. ValueError: not a comparison CSV (names the file).
    """
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or rows[0][:2] != ["method", "miou"] or len(rows[0]) < 3:
        raise ValueError(f"{path} is not a comparison CSV (header 'method,miou,background,...')")
    names = rows[0][2:]
    results: dict[str, dict[str, Any]] = {}
    for line, row in enumerate(rows[1:], start=2):
        try:
            values = [math.nan if cell == "" else float(cell) for cell in row[1:]]
        except ValueError as err:
            raise ValueError(f"{path}, line {line}: {err}") from None
        if len(values) != len(names) + 1:
            raise ValueError(f"{path}, line {line}: {len(row)} cells, header has {len(names) + 2}")
        results[Method.parse(row[0])] = {"miou": values[0], "per_class": values[1:]}
    return results, names


def miou_chart_figure(
    results: Mapping[str, Mapping[str, Any]],
    reference: Mapping[str, float] | None = None,
    spread: Mapping[str, float] | None = None,
    title: str = "mIoU per method",
    reference_label: str = "reference",
) -> Figure:
    """A bar chart of mIoU (%) per method, with value labels, as a matplotlib ``Figure``.

    Refined bars (``+crf``) are hatched and take their base method's colour, so each pair reads as
    one method with and without CRF. NaN bars are empty and labelled "–". Drawn on an Agg
    canvas, without pyplot's global state.

    Args:
        results: method -> {"miou": float in [0, 1], ...}; one bar each, in order.
        reference: method -> a reference mIoU in [0, 1] (e.g. a paper's figure), drawn as a
            black diamond on that method's bar; methods without one get none.
        spread: method -> a spread in [0, 1] (e.g. the standard deviation over runs), drawn as
            an error bar of +/- that value.
        title: the chart's title.
        reference_label: the legend entry of the reference markers.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods = [str(m) for m in results]
    values = [100 * float(result["miou"]) for result in results.values()]
    # a Method key knows its parts; any other name is a group of its own
    strategies = [getattr(m, "strategy", str(m)) for m in results]
    bases = list(dict.fromkeys(strategies))
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    figure = Figure(figsize=(max(4.0, 0.9 * len(methods) + 1.5), 3.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    heights = [0.0 if math.isnan(v) else v for v in values]
    errors = [100 * float((spread or {}).get(m, math.nan)) for m in methods]
    bars = axes.bar(
        range(len(methods)),
        heights,
        color=[cycle[bases.index(b) % len(cycle)] for b in strategies],
        edgecolor="black",
        hatch=["" if getattr(m, "step", None) is None else "//" for m in results],
        yerr=[0.0 if math.isnan(e) else e for e in errors] if spread else None,
        capsize=3 if spread else 0,
    )
    axes.bar_label(bars, labels=[MISSING if math.isnan(v) else f"{v:.1f}" for v in values])
    marked = [
        (i, 100 * float(reference[m])) for i, m in enumerate(methods) if m in (reference or {})
    ]
    if marked:
        xs, ys = zip(*marked, strict=True)
        axes.plot(xs, ys, "D", color="black", label=reference_label, linestyle="none")
        axes.legend(loc="upper right", fontsize="small")
    axes.set_xticks(
        range(len(methods)),
        methods,
        rotation=30 if len(methods) > 4 else 0,
        ha="right" if len(methods) > 4 else "center",
    )
    axes.set_ylabel("mIoU (%)")
    axes.set_ylim(0, 105)
    axes.set_title(title)
    figure.tight_layout()
    return figure


def render_miou_chart(
    results: Mapping[str, Mapping[str, Any]],
    reference: Mapping[str, float] | None = None,
    spread: Mapping[str, float] | None = None,
    title: str = "mIoU per method",
    reference_label: str = "reference",
) -> bytes:
    """PNG bytes of :func:`miou_chart_figure` (same arguments)."""
    figure = miou_chart_figure(results, reference, spread, title, reference_label)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_comparison(
    results: Mapping[str, Mapping[str, Any]],
    class_names: Sequence[str],
    out_dir: str | os.PathLike,
    overwrite: bool = True,
) -> dict[str, Path]:
    """Write ``comparison.md``, ``comparison.csv`` and ``comparison.png`` into ``out_dir``.

    Everything is validated and rendered before the first file is written; each file is
    written atomically.

    Returns:
        ``{"md": ..., "csv": ..., "png": ...}``.
    """
    out = Path(out_dir)
    contents: dict[str, str | bytes] = {
        "md": format_table(results, class_names),
        "csv": format_csv(results, class_names),
        "png": render_miou_chart(results),
    }
    paths: dict[str, Path] = {}
    for suffix, content in contents.items():
        paths[suffix] = out / f"comparison.{suffix}"
        with atomic_path(paths[suffix], overwrite=overwrite) as tmp:
            if isinstance(content, bytes):
                tmp.write_bytes(content)
            else:
                tmp.write_text(content, encoding="utf-8")
    return paths
