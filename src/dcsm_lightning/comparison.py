"""``ComparisonReport``: a callback turning logged per-method mIoU into a table, CSV and chart."""

from __future__ import annotations

import math
import re
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from dcsm_lightning.report import format_table, read_csv, write_comparison

_MIOU_KEY = re.compile(r"^(?P<stage>val|test)/miou/(?P<method>.+)$")


def collect_results(
    metrics: dict[str, float], label_names: list[str], stage: str = "val"
) -> dict[str, dict[str, object]]:
    """Group logged metrics ``<stage>/miou/<method>`` and ``<stage>/iou/<method>/<label>``.

    Args:
        metrics: logged scalars (e.g. ``trainer.callback_metrics``), values in [0, 1].
        label_names: the K + 1 label names, background first.

    Returns:
        method -> {"miou": float, "per_class": list of K + 1 floats (NaN where not logged)}.
    """
    results: dict[str, dict[str, object]] = {}
    for key, value in metrics.items():
        match = _MIOU_KEY.match(key)
        if match is None or match["stage"] != stage:
            continue
        method = match["method"]
        per_class = [
            float(metrics.get(f"{stage}/iou/{method}/{name}", math.nan)) for name in label_names
        ]
        results[method] = {"miou": float(value), "per_class": per_class}
    return dict(sorted(results.items()))


class ComparisonReport(Callback):
    """Write ``comparison.md``, ``comparison.csv`` and ``comparison.png`` after validate / test.

    The Markdown table is printed, and also logged as text (``<stage>/comparison``) to every
    :class:`~lightning.pytorch.loggers.TensorBoardLogger` of the trainer.

    Works with any LightningModule that logs ``val/miou/<method>`` (and optionally
    ``val/iou/<method>/<label>``), such as :class:`~dcsm_lightning.models.MultiLabelFCN` with
    several saliency strategies and the :class:`~dcsm_lightning.crf.DenseCRF` callback.

    Args:
        output_dir: where to write; default the trainer's ``log_dir``.
        class_names: the K foreground names; default ``trainer.datamodule.class_names``.
        include: ``comparison.csv`` files of earlier runs (e.g. the classifier's saliency
            methods, when this run validates a segmentation network): their rows come first,
            in order; a method measured again in this run takes the place of its old row.
            Their columns must be this run's labels. They are read here, so a missing or
            malformed file stops the run before it starts.
    """

    def __init__(
        self,
        output_dir: str | None = None,
        class_names: list[str] | None = None,
        include: list[str] | None = None,
    ) -> None:
        self.output_dir = output_dir
        self.class_names = class_names
        self.include = list(include or [])
        self._earlier = [(path, *read_csv(path)) for path in self.include]
        #: paths written by the last run (``{"md": ..., "csv": ..., "png": ...}``).
        self.written: dict[str, Path] = {}

    def _write(self, trainer: Trainer, stage: str) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        names = self.class_names or list(getattr(trainer.datamodule, "class_names", []) or [])
        if not names:
            raise ValueError(
                "ComparisonReport needs class_names (or a datamodule with class_names)"
            )
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        results = collect_results(metrics, ["background", *names], stage)
        if not results:
            rank_zero_info(
                f"ComparisonReport: nothing logged under {stage}/miou/; no report written"
            )
            return
        results = {**self._included(["background", *names]), **results}
        out_dir = Path(self.output_dir or trainer.log_dir or trainer.default_root_dir)
        self.written = write_comparison(results, ["background", *names], out_dir)
        table = format_table(results, ["background", *names])
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):  # the text tab renders Markdown
                logger.experiment.add_text(f"{stage}/comparison", table, trainer.global_step)
        paths = ", ".join(str(p) for p in self.written.values())
        print(f"\n{table}\n\nComparison written to: {paths}")

    def _included(self, label_names: list[str]) -> dict[str, dict[str, object]]:
        rows: dict[str, dict[str, object]] = {}
        for path, results, columns in self._earlier:
            if columns != label_names:
                raise ValueError(
                    f"{path} has the columns {columns}, this run's labels are {label_names}"
                )
            rows.update(results)
        return rows

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, "val")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, "test")
