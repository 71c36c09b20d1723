"""Charts of results: mIoU per method, IoU per class and method, and sweeps of one knob.

Every function returns a matplotlib ``Figure`` drawn without pyplot
(:func:`~dcsm_lightning.outputs.canvas.new_figure`); IoUs come in [0, 1] and are drawn in %.
A method's colour is its strategy's (``dcsm`` and ``dcsm+crf`` share one), refined methods
(a :class:`~dcsm_lightning.segmentation.methods.Method` with a step) are hatched or dashed.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dcsm_lightning.outputs.canvas import figure_png, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "MISSING",
    "miou_chart_figure",
    "per_class_chart_figure",
    "render_miou_chart",
    "sweep_chart_figure",
]

MISSING = "–"  # en dash: how tables and charts show NaN
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _strategy_colors(methods: Sequence[Any]) -> list[str]:
    """One colour per method: its strategy's, from matplotlib's default cycle (any name that
    is not a ``Method`` is a strategy of its own)."""
    import matplotlib

    strategies = [getattr(m, "strategy", str(m)) for m in methods]
    bases = list(dict.fromkeys(strategies))
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    return [cycle[bases.index(s) % len(cycle)] for s in strategies]


def _refined(method: Any) -> bool:
    return getattr(method, "step", None) is not None


def _set_title(axes: Any, title: str, width_inches: float) -> None:
    """The title, each line wrapped to the figure's width (about 11 characters an inch)."""
    chars = max(20, int(11 * width_inches))
    lines = [part for line in title.split("\n") for part in textwrap.wrap(line, chars) or [""]]
    axes.set_title("\n".join(lines), fontsize="medium")


def miou_chart_figure(
    results: Mapping[str, Mapping[str, Any]],
    reference: Mapping[str, float] | None = None,
    spread: Mapping[str, float] | None = None,
    title: str = "mIoU per method",
    reference_label: str = "reference",
) -> Figure:
    """A bar chart of mIoU (%) per method, with value labels.

    Refined bars (``+crf``) are hatched and take their base method's colour, so each pair reads
    as one method with and without CRF. NaN bars are empty and labelled "–".

    Args:
        results: method -> {"miou": float in [0, 1], ...}; one bar each, in order.
        reference: method -> a reference mIoU in [0, 1] (e.g. a paper's figure), drawn as a
            black diamond on that method's bar; methods without one get none.
        spread: method -> a spread in [0, 1] (e.g. the standard deviation over runs), drawn as
            an error bar of +/- that value.
        title: the chart's title (a second line, e.g. the data and checkpoint, may follow
            a newline).
        reference_label: the legend entry of the reference markers.
    """
    methods = [str(m) for m in results]
    values = [100 * float(result["miou"]) for result in results.values()]
    figure = new_figure(max(4.0, 0.9 * len(methods) + 1.5), 3.5 + 0.2 * title.count("\n"))
    axes = figure.add_subplot()
    heights = [0.0 if math.isnan(v) else v for v in values]
    errors = [100 * float((spread or {}).get(m, math.nan)) for m in methods]
    bars = axes.bar(
        range(len(methods)),
        heights,
        color=_strategy_colors(list(results)),
        edgecolor="black",
        hatch=["//" if _refined(m) else "" for m in results],
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
    _set_title(axes, title, figure.get_figwidth())
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
    return figure_png(miou_chart_figure(results, reference, spread, title, reference_label))


def per_class_chart_figure(
    results: Mapping[str, Mapping[str, Any]],
    label_names: Sequence[str],
    title: str = "IoU per class",
) -> Figure:
    """Grouped bars: for each label (background first) one bar per method, IoU in %.

    A NaN IoU (a label absent from targets and predictions) leaves a gap. Methods keep the
    colours and hatches of :func:`miou_chart_figure`; the legend names them.

    Args:
        results: method -> {"per_class": K + 1 floats in [0, 1] (or NaN), ...}, in order.
        label_names: the K + 1 label names, background first (the x axis).
        title: the chart's title.

    Raises:
        ValueError: a method's ``per_class`` does not have one value per label.
    """
    methods = list(results)
    labels = [str(n) for n in label_names]
    for method in methods:
        if len(results[method]["per_class"]) != len(labels):
            raise ValueError(
                f"results[{str(method)!r}] has {len(results[method]['per_class'])} per-class "
                f"IoUs for {len(labels)} labels {labels}"
            )
    count = max(len(methods), 1)
    width = 0.8 / count
    figure = new_figure(
        min(18.0, max(6.0, 0.16 * len(labels) * count + 0.4 * len(labels) + 2.0)),
        4.0 + 0.2 * title.count("\n"),
    )
    axes = figure.add_subplot()
    colors = _strategy_colors(methods)
    for i, method in enumerate(methods):
        values = [100 * float(v) for v in results[method]["per_class"]]
        axes.bar(
            [x + (i - (count - 1) / 2) * width for x in range(len(labels))],
            [0.0 if math.isnan(v) else v for v in values],
            width,
            color=colors[i],
            edgecolor="black",
            linewidth=0.5,
            hatch="//" if _refined(method) else "",
            label=str(method),
        )
    rotate = len(labels) > 6
    axes.set_xticks(
        range(len(labels)), labels, rotation=45 if rotate else 0, ha="right" if rotate else "center"
    )
    axes.set_ylabel("IoU (%)")
    axes.set_ylim(0, 105)
    axes.set_xlim(-0.6, len(labels) - 0.4)
    axes.grid(axis="y", alpha=0.3)
    _set_title(axes, title, figure.get_figwidth())
    if methods:
        axes.legend(
            fontsize="small", ncol=min(len(methods), 4), loc="upper center",
            bbox_to_anchor=(0.5, -0.25 if rotate else -0.1),
        )  # fmt: skip
    figure.tight_layout()
    return figure


def sweep_chart_figure(
    series: Mapping[str, Mapping[float, float]],
    knob: str,
    title: str = "",
    reference: Mapping[str, Mapping[float, float]] | None = None,
    reference_label: str = "paper",
) -> Figure:
    """A line per series over one knob (e.g. alpha): x = the knob's value, y = mIoU in %.

    Each series gets its own colour and marker; a series whose name is a refined
    :class:`~dcsm_lightning.segmentation.methods.Method` (``dcsm+crf``) is dashed.
    NaN points are left out.

    Args:
        series: name -> {knob value: mIoU in [0, 1]}, drawn in order of the values.
        knob: the x axis's label (``"alpha"``, ``"N"``, ``"w1"``).
        title: the chart's title.
        reference: name -> {knob value: reference mIoU in [0, 1]} (e.g. the paper's), drawn
            as hollow markers in the series' colour, dotted, labelled "<name> (<label>)".
        reference_label: how reference entries are named in the legend.
    """
    import matplotlib

    figure = new_figure(7.5, 3.8 + 0.2 * title.count("\n"))
    axes = figure.add_subplot()
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, points) in enumerate(series.items()):
        color, marker = cycle[i % len(cycle)], MARKERS[i % len(MARKERS)]
        xs = sorted(x for x, y in points.items() if not math.isnan(y))
        axes.plot(
            xs, [100 * points[x] for x in xs], marker=marker, color=color,
            linestyle="--" if _refined(name) else "-", label=str(name),
        )  # fmt: skip
        paper = (reference or {}).get(name, {})
        if paper:
            px = sorted(paper)
            axes.plot(
                px, [100 * paper[x] for x in px], marker=marker, color=color,
                markerfacecolor="none", linestyle=":", label=f"{name} ({reference_label})",
            )  # fmt: skip
    if all(float(x).is_integer() for points in series.values() for x in points):
        from matplotlib.ticker import MaxNLocator

        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # N = 0.5 means nothing
    axes.set_xlabel(knob)
    axes.set_ylabel("mIoU (%)")
    axes.grid(alpha=0.3)
    if title:
        _set_title(axes, title, figure.get_figwidth())
    if series:  # beside the plot, where it hides no line
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return figure
