"""The method comparison: a Markdown table, a CSV and two charts (mIoU per method, IoU per
class and method; :mod:`~dcsm_lightning.outputs.charts`).

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
from typing import Any

from dcsm_lightning.files import atomic_path
from dcsm_lightning.outputs.canvas import figure_png
from dcsm_lightning.outputs.charts import MISSING, per_class_chart_figure, render_miou_chart
from dcsm_lightning.segmentation.methods import Method

BACKGROUND = "background"


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


def write_comparison(
    results: Mapping[str, Mapping[str, Any]],
    class_names: Sequence[str],
    out_dir: str | os.PathLike,
    overwrite: bool = True,
    subtitle: str = "",
) -> dict[str, Path]:
    """Write ``comparison.md``, ``comparison.csv``, ``comparison.png`` (mIoU per method) and
    ``per_class.png`` (IoU per class and method) into ``out_dir``.

    Everything is validated and rendered before the first file is written; each file is
    written atomically.

    Args:
        results: method -> {"miou": float, "per_class": K + 1 floats}, IoUs in [0, 1].
        class_names: the K foreground names, or K + 1 starting with "background".
        out_dir: the folder.
        overwrite: replace existing files (else ``FileExistsError``).
        subtitle: a second title line of both charts, e.g. the data and the checkpoint.

    Returns:
        ``{"md": ..., "csv": ..., "png": ..., "per_class": ...}``.
    """
    out = Path(out_dir)
    rows = comparison_rows(results, class_names)
    labels = list(rows[0])[2:] if rows else _empty_columns(class_names)
    titled = f"\n{subtitle}" if subtitle else ""
    per_class = {
        m: {"per_class": [row[n] for n in labels]} for m, row in zip(results, rows, strict=True)
    }
    contents: dict[str, tuple[str, str | bytes]] = {
        "md": ("comparison.md", format_table(results, class_names)),
        "csv": ("comparison.csv", format_csv(results, class_names)),
        "png": ("comparison.png", render_miou_chart(results, title="mIoU per method" + titled)),
        "per_class": (
            "per_class.png",
            figure_png(per_class_chart_figure(per_class, labels, "IoU per class" + titled)),
        ),
    }
    paths: dict[str, Path] = {}
    for key, (name, content) in contents.items():
        paths[key] = out / name
        with atomic_path(paths[key], overwrite=overwrite) as tmp:
            if isinstance(content, bytes):
                tmp.write_bytes(content)
            else:
                tmp.write_text(content, encoding="utf-8")
    return paths
