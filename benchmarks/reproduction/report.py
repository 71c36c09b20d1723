"""The study's files: one table (Markdown, CSV, chart) at a time, and ``REPORT.md`` with every
table in the folder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from dcsm_lightning import CRFSettings
from dcsm_lightning.files import save_text
from dcsm_lightning.outputs.canvas import save_figure_png
from dcsm_lightning.outputs.charts import sweep_chart_figure

from .evaluate import Result, crf_key
from .output import RowResult, best_line, write_table
from .planner import TABLE_FILES, table_file
from .tables import ALPHAS, BILATERAL_WEIGHTS, HOLDOUT, TABLES


class StudyReport:
    """Writes the study's tables and its ``REPORT.md`` into ``out``.

    Args:
        out: the output folder; command: the command line; class_names: the K classes.
        log: prints a status line.
    """

    def __init__(
        self, out: Path, command: str, class_names: Sequence[str], log: Callable[[str], None]
    ) -> None:
        self.out, self.command, self.class_names, self.log = out, command, list(class_names), log
        #: the classifiers' paths, and each one's mAP on the val images once known
        self.checkpoints: list[str] = []
        self.mean_ap: dict[int, float] = {}
        #: split -> which images it is
        self.split_notes: dict[str, str] = {}

    def write(
        self, table: str, rows: list[RowResult], extra: str, indices: Sequence[int]
    ) -> None:
        """Write one table's files (rows on the classifiers ``indices``) and the report."""
        name = table_file(table)
        used = ", ".join(f"`{self.checkpoints[i]}`" for i in indices)
        notes = [self.split_notes["val"], f"classifier(s): {used}"]
        if table in TABLES:
            notes.insert(0, TABLES[table].note)
            title = TABLES[table].title
        else:
            title = (
                "Beyond the paper: alpha and the CRF bilateral weight chosen on a TRAIN hold-out"
            )
            notes.insert(0, "both rows evaluated on val; the paper's 44.1 is its default setting")
        notes.append(f"per-class IoUs (first classifier): {name}_per_class.csv")
        if table == "1":
            best = [
                best_line([r for r in rows if r.label.startswith(p)]) for p in ("dcsm", "simonyan")
            ]
        else:
            best = [best_line(rows)]
        knob = TABLES[table].knob if table in TABLES else None
        paths = write_table(
            self.out, name, title, notes, rows, ["background", *self.class_names], best, extra,
            knob,
        )  # fmt: skip
        self.log(f"table {table} written: {', '.join(str(p) for p in paths.values())}")
        self.write_report()

    def write_holdout_chart(self, grid: dict[float, dict[str, Result]]) -> Path:
        """``table_holdout_grid.png``: the hold-out mIoU over alpha, a line without the CRF
        and one per bilateral weight w1."""
        series = {"w/o CRF": {a: grid[a]["none"]["miou"] for a in ALPHAS}}
        for w in BILATERAL_WEIGHTS:
            key = crf_key(CRFSettings(bilateral_compat=w))
            series[f"+ CRF, w1={w:g}"] = {a: grid[a][key]["miou"] for a in ALPHAS}
        title = f"Hold-out search: mIoU by alpha and CRF weight w1\n{self.split_notes[HOLDOUT]}"
        path = self.out / f"{table_file(HOLDOUT)}_grid.png"
        save_figure_png(path, sweep_chart_figure(series, "alpha", title), overwrite=True)
        self.log(f"hold-out grid chart written: {path}")
        return path

    def write_report(self, footer: str = "") -> None:
        """``REPORT.md``: this run's command and classifiers, then every table in the folder
        (each table's notes name the classifiers it used)."""
        lines = ["# Reproduction study", "", f"Command: `{self.command}`", "", "Classifiers:"]
        for i, path in enumerate(self.checkpoints):
            mean_ap = self.mean_ap.get(i)
            score = (
                "" if mean_ap is None else f" (classifier mAP {mean_ap:.3f} on the val images used)"
            )
            lines.append(f"- `{path}`{score}")
        lines += ["", *(f"- {note}" for note in self.split_notes.values()), ""]
        if footer:
            lines += [footer, ""]
        for name in TABLE_FILES:  # every table in the folder, this run's and earlier runs'
            if not (self.out / f"{name}.md").is_file():
                continue
            lines.append((self.out / f"{name}.md").read_text(encoding="utf-8"))
            lines.append(f"![{name}]({name}.png)\n")
        save_text(self.out / "REPORT.md", "\n".join(lines), overwrite=True)
