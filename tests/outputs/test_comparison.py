"""``ComparisonReport`` reads the results the segmentation holds (no parsing of logged keys)."""

from __future__ import annotations

import csv
import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader

from dcsm_lightning.outputs.comparison import ComparisonReport, describe_run
from dcsm_lightning.segmentation.callback import SaliencySegmentation

LABELS = ["background", "cat", "dog"]
IOU = {"dcsm": [0.9, 0.5, 0.25], "dcsm+crf": [0.95, 0.6, 0.35]}


class _Module(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def validation_step(self, batch, batch_idx) -> None:
        pass


class _CannedResults(SaliencySegmentation):
    """A segmentation whose epoch ends with fixed results ("dog" absent for dcsm+crf)."""

    def __init__(self) -> None:
        super().__init__([], class_names=LABELS[1:])

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self.results["val"] = {
            method: {"miou": sum(v) / len(v), "per_class": v[:2] + [v[2] if i == 0 else nan]}
            for i, (method, v) in enumerate(IOU.items())
        }


nan = float("nan")


def test_report_from_a_foreign_module_writes_files_and_tensorboard_text(tmp_path, capsys):
    logger = TensorBoardLogger(tmp_path, name="tb")
    report = ComparisonReport(output_dir=str(tmp_path / "report"))
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=logger,
        callbacks=[report, _CannedResults()],  # any order
        enable_progress_bar=False,
    )
    trainer.validate(_Module(), DataLoader(torch.zeros(2, 1)), verbose=False)
    assert report.written["per_class"] == tmp_path / "report" / "per_class.png"
    assert report.written["per_class"].read_bytes().startswith(b"\x89PNG")
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


def test_report_without_segmentation_says_what_to_add(tmp_path):
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, callbacks=[ComparisonReport()], enable_progress_bar=False
    )
    with pytest.raises(ValueError, match="add SaliencySegmentation"):
        trainer.validate(_Module(), DataLoader(torch.zeros(2, 1)), verbose=False)


def test_include_puts_earlier_rows_first_and_a_remeasured_method_replaces_its_row(tmp_path):
    from dcsm_lightning.outputs.report import read_csv, write_comparison

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


def test_charts_are_titled_with_the_data_and_the_checkpoint():
    from types import SimpleNamespace

    class SyntheticDataModule:  # the name and attributes describe_run reads
        family, val_split = "shapes", "val"

    class VOCDataModule:
        root, val_split = "/data/VOCdevkit/VOC2012", "val"

    loaders = [list(range(7))]  # one loader of 7 batches
    trainer = SimpleNamespace(
        datamodule=SyntheticDataModule(), num_val_batches=[2], val_dataloaders=loaders,
        ckpt_path="/x/runs/synthetic/version_0/checkpoints/last.ckpt",
    )  # fmt: skip
    assert describe_run(trainer) == (
        "Synthetic (shapes), val; first 2 of 7 batches; checkpoint synthetic/version_0/last.ckpt"
    )
    trainer.datamodule, trainer.num_val_batches, trainer.ckpt_path = VOCDataModule(), [7], "b.ckpt"
    assert describe_run(trainer) == "VOC (VOC2012), val; checkpoint b.ckpt"
    trainer.datamodule, trainer.ckpt_path = None, None
    assert describe_run(trainer) == ""
