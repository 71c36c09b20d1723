"""``ComparisonReport`` with someone else's LightningModule that only logs the mIoU keys."""

from __future__ import annotations

import csv
import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader

from dcsm_lightning.comparison import ComparisonReport, collect_results

LABELS = ["background", "cat", "dog"]
IOU = {"dcsm": [0.9, 0.5, 0.25], "dcsm+crf": [0.95, 0.6, 0.35]}


class _LogsIoU(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def validation_step(self, batch, batch_idx) -> None:
        for method, per_class in IOU.items():
            self.log(f"val/miou/{method}", sum(per_class) / len(per_class))
            for name, iou in zip(LABELS, per_class, strict=True):
                if name != "dog" or method == "dcsm":  # dcsm+crf leaves "dog" unlogged
                    self.log(f"val/iou/{method}/{name}", iou)


def test_collect_results_groups_by_method_and_fills_nan():
    metrics = {"val/miou/a": 0.5, "val/iou/a/cat": 0.4, "test/miou/b": 0.1, "val/loss": 1.0}
    out = collect_results(metrics, ["background", "cat"])
    assert list(out) == ["a"] and out["a"]["miou"] == 0.5
    assert math.isnan(out["a"]["per_class"][0]) and out["a"]["per_class"][1] == 0.4


def test_report_from_a_foreign_module_writes_files_and_tensorboard_text(tmp_path, capsys):
    logger = TensorBoardLogger(tmp_path, name="tb")
    report = ComparisonReport(output_dir=str(tmp_path / "report"), class_names=LABELS[1:])
    trainer = pl.Trainer(
        accelerator="cpu", logger=logger, callbacks=[report], enable_progress_bar=False
    )
    trainer.validate(_LogsIoU(), DataLoader(torch.zeros(2, 1)), verbose=False)
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "report" / "comparison.csv").open())}
    assert sorted(rows) == ["dcsm", "dcsm+crf"]
    assert float(rows["dcsm"]["cat"]) == pytest.approx(0.5)
    assert rows["dcsm+crf"]["dog"] == ""  # not logged -> missing, not zero
    printed = capsys.readouterr().out
    assert "| dcsm+crf | 63.3 | 95.0 | 60.0 |" in printed
    events = EventAccumulator(logger.log_dir, size_guidance={"tensors": 0})
    events.Reload()
    text = events.Tensors("val/comparison/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| dcsm | 55.0 | 90.0 | 50.0 | 25.0 |" in text


def test_report_needs_class_names(tmp_path):
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, callbacks=[ComparisonReport()], enable_progress_bar=False
    )
    with pytest.raises(ValueError, match="class_names"):
        trainer.validate(_LogsIoU(), DataLoader(torch.zeros(2, 1)), verbose=False)


def test_include_puts_earlier_rows_first_and_a_remeasured_method_replaces_its_row(tmp_path):
    from dcsm_lightning.report import read_csv, write_comparison

    names = ["background", "a", "b"]
    earlier = {
        "dcsm": {"miou": 0.4, "per_class": [0.5, 0.3, 0.4]},
        "segnet": {"miou": 0.1, "per_class": [0.1, 0.1, 0.1]},
    }
    write_comparison(earlier, names, tmp_path / "first")
    report = ComparisonReport(
        tmp_path / "second", include=[str(tmp_path / "first" / "comparison.csv")]
    )
    now = {"segnet": {"miou": 0.6, "per_class": [0.7, 0.5, math.nan]}}
    merged = {**report._included(names), **now}
    assert list(merged) == ["dcsm", "segnet"] and merged["segnet"]["miou"] == 0.6
    write_comparison(merged, names, tmp_path / "second")
    back, columns = read_csv(tmp_path / "second" / "comparison.csv")
    assert columns == names and back["dcsm"] == earlier["dcsm"]
    assert math.isnan(back["segnet"]["per_class"][2])
    with pytest.raises(ValueError, match="columns"):
        report._included(["background", "a", "c"])
    with pytest.raises(FileNotFoundError):
        ComparisonReport(include=[str(tmp_path / "nope.csv")])
