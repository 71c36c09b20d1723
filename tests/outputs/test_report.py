from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from PIL import Image

from dcsm_lightning.outputs.charts import miou_chart_figure, render_miou_chart
from dcsm_lightning.outputs.report import (
    comparison_rows,
    format_csv,
    format_table,
    read_csv,
    write_comparison,
)
from dcsm_lightning.segmentation.labels import method_name
from dcsm_lightning.segmentation.methods import Method

NAMES = ["aeroplane", "bicycle"]
RESULTS = {
    "dcsm": {"miou": 0.41234567, "per_class": [0.8, 0.3, math.nan]},
    "dcsm+crf": {"miou": 0.45, "per_class": [0.85, 0.3512, 0.2]},
    "simonyan": {"miou": 0.1, "per_class": [0.7, 0.0, 1 / 3]},
}


def test_rows_keep_order_and_values():
    rows = comparison_rows(RESULTS, NAMES)
    assert [r["method"] for r in rows] == ["dcsm", "dcsm+crf", "simonyan"]
    assert list(rows[0]) == ["method", "miou", "background", "aeroplane", "bicycle"]
    assert rows[1]["bicycle"] == 0.2 and math.isnan(rows[0]["bicycle"])
    # names that already start with "background" (K + 1 of them) give the same rows
    again = comparison_rows(RESULTS, ["background", *NAMES])
    assert [list(r.items())[:4] for r in again] == [list(r.items())[:4] for r in rows]


def test_rows_reject_mismatches():
    with pytest.raises(ValueError, match="3 entries"):
        comparison_rows(RESULTS, ["aeroplane"])
    with pytest.raises(ValueError, match="needs 'miou' and 'per_class'"):
        comparison_rows({"x": {"miou": 0.1}}, NAMES)
    with pytest.raises(ValueError, match="unique"):
        comparison_rows(RESULTS, ["miou", "bicycle"])


def test_markdown_table():
    table = format_table(RESULTS, NAMES)
    lines = table.strip().split("\n")
    assert lines[0] == "| method | mIoU | background | aeroplane | bicycle |"
    assert lines[1] == "|:---|---:|---:|---:|---:|"
    assert lines[2] == "| dcsm | 41.2 | 80.0 | 30.0 | – |"
    assert lines[3] == "| dcsm+crf | 45.0 | 85.0 | 35.1 | 20.0 |"
    assert lines[4] == "| simonyan | 10.0 | 70.0 | 0.0 | 33.3 |"
    assert len(lines) == 5


def test_csv_parses_back_to_the_same_numbers(tmp_path):
    paths = write_comparison(RESULTS, NAMES, tmp_path)
    assert set(paths) == {"md", "csv", "png", "per_class"}
    assert paths["md"].read_text(encoding="utf-8") == format_table(RESULTS, NAMES)
    with paths["csv"].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["method", "miou", "background", "aeroplane", "bicycle"]
    for row, (method, result) in zip(rows, RESULTS.items(), strict=True):
        assert row["method"] == method
        assert float(row["miou"]) == result["miou"]
        parsed = [float(row[n]) if row[n] != "" else math.nan for n in list(row)[2:]]
        np.testing.assert_array_equal(parsed, result["per_class"])  # exact, NaN == NaN
    assert rows[0]["bicycle"] == ""  # NaN is an empty cell


def test_png_is_a_valid_image_and_written_atomically(tmp_path):
    paths = write_comparison(RESULTS, NAMES, tmp_path)
    with Image.open(paths["png"]) as image:
        image.verify()
    with Image.open(paths["png"]) as image:
        assert image.format == "PNG" and image.width > 200 and image.height > 100
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # bars, hatching, text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(FileExistsError):
        write_comparison(RESULTS, NAMES, tmp_path, overwrite=False)
    write_comparison(RESULTS, NAMES, tmp_path)  # default overwrite=True replaces


def test_nan_miou_and_empty_results(tmp_path):
    results = {"broken": {"miou": math.nan, "per_class": [math.nan] * 3}}
    assert format_table(results, NAMES).split("\n")[2] == "| broken | – | – | – | – |"
    assert format_csv(results, NAMES).split("\n")[1] == "broken,,,,"
    assert render_miou_chart(results).startswith(b"\x89PNG")
    assert (
        format_table({}, NAMES).split("\n")[0]
        == "| method | mIoU | background | aeroplane | bicycle |"
    )


def test_chart_draws_reference_markers_and_spread_bars():
    figure = miou_chart_figure(
        RESULTS, reference={"dcsm+crf": 0.441, "absent": 0.9}, spread={"dcsm": 0.02}, title="T"
    )
    axes = figure.axes[0]
    markers = [line for line in axes.get_lines() if line.get_marker() == "D"]
    assert len(markers) == 1  # one series, only for the methods present
    assert list(markers[0].get_xdata()) == [1]
    assert list(markers[0].get_ydata()) == pytest.approx([44.1])
    assert axes.get_title() == "T" and axes.get_legend() is not None
    # the +/- 2 points error bar on the first bar: a vertical segment from 39.2 to 43.2
    segments = [seg for coll in axes.collections for seg in coll.get_segments()]
    assert len(segments) == 3  # one per bar (zero length where no spread is given)
    assert segments[0][:, 1] == pytest.approx([41.234567 - 2, 41.234567 + 2])
    assert segments[1][:, 1] == pytest.approx([45.0, 45.0])
    plain = miou_chart_figure(RESULTS).axes[0]
    assert not [line for line in plain.get_lines() if line.get_marker() == "D"]
    assert plain.get_legend() is None and not plain.collections


def test_chart_groups_methods_by_their_typed_parts(tmp_path):
    results = {
        method_name("dcsm"): RESULTS["dcsm"],
        method_name("dcsm", "crf5"): RESULTS["dcsm+crf"],
        method_name("simonyan"): RESULTS["simonyan"],
    }
    bars = miou_chart_figure(results).axes[0].patches
    assert [bar.get_hatch() or "" for bar in bars] == ["", "//", ""]
    assert bars[0].get_facecolor() == bars[1].get_facecolor() != bars[2].get_facecolor()
    # a table read back from its CSV keeps each row's strategy and step
    read, _ = read_csv(write_comparison(results, NAMES, tmp_path)["csv"])
    assert [(m.strategy, m.step) for m in read] == [
        ("dcsm", None), ("dcsm", "crf5"), ("simonyan", None)
    ]
    odd = [Method.parse(name) for name in ("a+b+c", "x")]  # not two valid parts: kept whole
    assert [(m.strategy, m.step) for m in odd] == [("a+b+c", None), ("x", None)]
