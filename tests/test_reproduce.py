"""benchmarks/reproduce.py on tiny data: it trains a classifier through the CLI, writes the
tables, agrees with ``dcsm-lightning validate`` on the same images, and resumes."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from demo_config import TINY, demo_config

from dcsm_lightning.app.cli import main

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce.py"
SMALL = [*TINY, "--data.init_args.size=48", "--data.init_args.batch_size=4"]


def reproduce(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600
    )


def rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as handle:
        return {row["setting"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reproduce")
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(demo_config(tmp / "fit")))
    out = tmp / "study"
    args = [
        "--config", str(config), "--output_dir", str(out), "--tables", "5,holdout",
        "--limit", "4", "--holdout", "4", "--train_seeds", "1", *SMALL,
        "--trainer.max_epochs=1", "--trainer.enable_model_summary=false",
    ]  # fmt: skip
    first = reproduce(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    return config, out, args, first


def test_writes_each_table_beside_the_paper(study):
    _, out, _, first = study
    assert "A SUBSET, the first 4 of 8 images" in first.stdout  # says it evaluates a subset
    assert "training classifier seed 0" in first.stdout
    for name in ("table5", "table_holdout"):
        for suffix in (".md", ".csv", "_per_class.csv", ".png"):
            assert (out / f"{name}{suffix}").is_file()
    table = rows(out / "table5.csv")
    assert list(table) == ["BP", "guided BP"]
    assert float(table["guided BP"]["paper_miou_crf"]) == pytest.approx(0.441)
    assert 0 <= float(table["BP"]["miou"]) <= 1 and table["BP"]["classifiers"] == "1"
    assert (out / "table_holdout_grid.png").is_file()  # alpha x w1 as lines
    holdout = (out / "table_holdout.md").read_text()
    assert "4 of the 16 TRAIN images" in holdout and "Chosen on the hold-out: alpha" in holdout
    report = (out / "REPORT.md").read_text()
    assert "### Table 5" in report and "seed0.ckpt" in report


def test_agrees_with_the_cli_validate_on_the_same_images(study):
    """The first 4 of 8 val images are the 4 images of num_val=4 (image i depends on i only)."""
    config, out, _, _ = study
    ckpt = str(out / "classifiers" / "seed0.ckpt")
    cli = main(
        ["validate", "--config", str(config), "--ckpt_path", ckpt, *SMALL,
         "--model.segmentation.saliency=[DCSM]", "--data.init_args.num_val=4",
         f"--trainer.default_root_dir={out / 'validate'}"]
    )  # fmt: skip
    metrics = cli.trainer.callback_metrics
    guided = rows(out / "table5.csv")["guided BP"]
    assert float(guided["miou"]) == pytest.approx(float(metrics["val/miou/dcsm"]), abs=1e-6)
    assert float(guided["miou_crf"]) == pytest.approx(float(metrics["val/miou/dcsm+crf"]), abs=1e-6)


def test_resumes_without_recomputing(study):
    _, out, args, _ = study
    before = json.loads((out / "results.json").read_text())
    table = (out / "table5.md").read_text()
    again = reproduce(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "exists (trained earlier), reused" in again.stdout
    assert not re.search(r"\] \(\d+/\d+\) ", again.stdout)  # no "(k/n) <setting>" evaluation
    assert "0 settings evaluated" in (out / "REPORT.md").read_text()
    assert json.loads((out / "results.json").read_text()) == before
    assert (out / "table5.md").read_text() == table


def test_bad_input_is_one_line(tmp_path):
    ckpt = str(tmp_path / "x.ckpt")
    missing = reproduce("--config", "c.yaml", "--ckpt_path", ckpt, "--output_dir", "o")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[0].endswith("x.ckpt does not exist")
    unknown = reproduce(
        "--config", "c.yaml", "--ckpt_path", "a", "--output_dir", "o", "--tables", "9"
    )
    assert unknown.returncode == 2 and "--tables: unknown ['9']" in unknown.stderr


def test_sweep_tables_are_drawn_as_lines_over_their_knob(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    from reproduction import output
    from reproduction.tables import ALPHAS, TABLES

    drawn = []
    monkeypatch.setattr(
        output, "sweep_chart_figure", lambda *args: drawn.append(args) or plt_figure()
    )
    for table in ("1", "4"):
        rows = [
            output.RowResult(r.label, [0.3, 0.5], [0.6], [], [], r.paper_plain, r.paper_crf,
                             r.point)
            for r in TABLES[table].rows
        ]  # fmt: skip
        assert output.sweep_png(rows, TABLES[table].knob, "t").startswith(b"\x89PNG")
    (series_1, alpha, _, reference_1), (series_4, n, _, _) = drawn
    assert alpha == "alpha" and n == "N"
    assert list(series_1) == ["dcsm", "dcsm+crf", "simonyan", "simonyan+crf"]
    assert list(series_1["simonyan+crf"]) == list(ALPHAS)
    assert series_1["dcsm"][3.0] == pytest.approx(0.4)  # the mean over classifiers
    assert reference_1["dcsm+crf"] == pytest.approx({2.0: 0.4, 3.0: 0.441, 4.0: 0.406, 5.0: 0.364})
    assert list(series_4) == ["dcsm", "dcsm+crf"]  # the oracle row is no point of the sweep
    assert list(series_4["dcsm"]) == [0, 1, 2, 3, 4]


def plt_figure():
    from dcsm_lightning.outputs.canvas import new_figure

    return new_figure(1, 1)
