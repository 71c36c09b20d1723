"""The charts: per-class bars and sweep lines, checked on what they draw."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dcsm_lightning.outputs.charts import per_class_chart_figure, sweep_chart_figure
from dcsm_lightning.segmentation.labels import method_name

LABELS = ["background", "cat", "dog"]
RESULTS = {
    method_name("dcsm"): {"per_class": [0.8, 0.3, math.nan]},
    method_name("dcsm", "crf"): {"per_class": [0.85, 0.35, 0.2]},
    method_name("simonyan"): {"per_class": [0.7, 0.0, 1 / 3]},
}


def test_per_class_bars_one_group_per_label_one_bar_per_method():
    figure = per_class_chart_figure(RESULTS, LABELS, title="IoU per class\ndata; checkpoint")
    axes = figure.axes[0]
    bars = axes.patches
    assert len(bars) == 3 * 3
    heights = np.array([b.get_height() for b in bars]).reshape(3, 3)  # method x label
    np.testing.assert_allclose(heights, [[80, 30, 0], [85, 35, 20], [70, 0, 100 / 3]])
    centres = np.array([b.get_x() + b.get_width() / 2 for b in bars]).reshape(3, 3)
    assert (np.round(centres.mean(axis=0), 6) == [0, 1, 2]).all()  # groups on their label
    assert [t.get_text() for t in axes.get_xticklabels()] == LABELS
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["dcsm", "dcsm+crf", "simonyan"]
    assert bars[0].get_facecolor() == bars[3].get_facecolor() != bars[6].get_facecolor()
    assert bars[3].get_hatch() == "//" and not bars[0].get_hatch()
    assert axes.get_title() == "IoU per class\ndata; checkpoint"
    with pytest.raises(ValueError, match="2 per-class IoUs for 3 labels"):
        per_class_chart_figure({"x": {"per_class": [0.1, 0.2]}}, LABELS)


def test_sweep_draws_a_line_per_series_over_the_knob():
    series = {
        method_name("dcsm"): {3.0: 0.4, 1.0: 0.2, 2.0: math.nan},
        method_name("dcsm", "crf"): {1.0: 0.25, 2.0: 0.3, 3.0: 0.45},
        method_name("simonyan"): {1.0: 0.1, 2.0: 0.15, 3.0: 0.2},
    }
    reference = {method_name("dcsm", "crf"): {2.0: 0.40, 3.0: 0.441}}
    axes = sweep_chart_figure(series, "alpha", "T", reference).axes[0]
    lines = axes.get_lines()
    assert [line.get_label() for line in lines] == [
        "dcsm", "dcsm+crf", "dcsm+crf (paper)", "simonyan"
    ]  # fmt: skip
    assert list(lines[0].get_xdata()) == [1.0, 3.0]  # sorted, NaN left out
    assert list(lines[0].get_ydata()) == pytest.approx([20, 40])
    assert list(lines[2].get_ydata()) == pytest.approx([40, 44.1])
    assert lines[0].get_linestyle() == "-" and lines[1].get_linestyle() == "--"
    drawn = [lines[0], lines[1], lines[3]]
    assert len({line.get_color() for line in drawn}) == 3
    assert len({line.get_marker() for line in drawn}) == 3
    assert lines[2].get_color() == lines[1].get_color()  # the reference in its series' colour
    assert axes.get_xlabel() == "alpha" and axes.get_title() == "T"
