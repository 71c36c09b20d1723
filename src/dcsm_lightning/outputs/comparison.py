"""``ComparisonReport``: a callback turning per-method mIoU into a table, CSV and chart."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from dcsm_lightning.outputs.report import format_table, read_csv, write_comparison
from dcsm_lightning.segmentation.callback import find_segmentation


def describe_run(trainer: Trainer, stage: str = "val") -> str:
    """What a comparison was computed on, for its charts' titles: the datamodule (its family,
    folder and split when it has them, and how many batches when limited) and the checkpoint
    (its file name, after its run folder when it lies in ``<run>/<version>/checkpoints/``),
    e.g. ``"Synthetic (shapes), val; checkpoint synthetic/version_0/last.ckpt"``."""
    data = trainer.datamodule
    parts = []
    if data is not None:
        name = type(data).__name__.removesuffix("DataModule") or type(data).__name__
        folder = getattr(data, "root", None) or getattr(data, "images", None)
        details = [str(getattr(data, "family", "") or ""), Path(str(folder or "")).name]
        details = [d for d in details if d]
        split = getattr(data, f"{stage}_split", None) or stage
        parts.append(name + (f" ({', '.join(details)})" if details else "") + f", {split}")
    counts = trainer.num_val_batches if stage == "val" else trainer.num_test_batches
    loaders = trainer.val_dataloaders if stage == "val" else trainer.test_dataloaders
    if loaders is not None and counts:
        lengths = [len(dl) for dl in (loaders if isinstance(loaders, (list, tuple)) else [loaders])]
        if sum(int(c) for c in counts) < sum(lengths):
            parts.append(f"first {sum(int(c) for c in counts)} of {sum(lengths)} batches")
    if trainer.ckpt_path:
        path = Path(trainer.ckpt_path)
        run = path.parts[-4:-2] if path.parent.name == "checkpoints" else ()
        parts.append(f"checkpoint {'/'.join((*run, path.name))}")
    return "; ".join(parts)


class ComparisonReport(Callback):
    """Write ``comparison.md``, ``comparison.csv``, ``comparison.png`` (mIoU per method) and
    ``per_class.png`` (IoU per class and method) after validate / test; the charts are titled
    with the data and the checkpoint (:func:`describe_run`).

    The Markdown table is printed, and also logged as text (``<stage>/comparison``) to every
    :class:`~lightning.pytorch.loggers.TensorBoardLogger` of the trainer.

    It reads :attr:`SaliencySegmentation.results
    <dcsm_lightning.SaliencySegmentation.results>` of the trainer's segmentation
    callback (given to the trainer, or by a module such as
    :class:`~dcsm_lightning.models.MultiLabelFCN`), one row per method in its order, so it
    works with any LightningModule the segmentation works with. Callback order does not matter.

    Args:
        output_dir: where to write; default the trainer's ``log_dir``.
        class_names: the K foreground names shown as columns; default the segmentation's.
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
        if output_dir is not None and not str(output_dir).strip():
            raise ValueError("output_dir is empty: give a folder")
        self.output_dir = None if output_dir is None else str(Path(output_dir).expanduser())
        self.class_names = class_names
        self.include = list(include or [])
        self._earlier = [(path, *read_csv(path)) for path in self.include]
        #: paths written by the last run (``{"md", "csv", "png", "per_class"}`` -> path).
        self.written: dict[str, Path] = {}

    def _write(self, trainer: Trainer, stage: str) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        segmentation = find_segmentation(trainer, "ComparisonReport")
        names = list(self.class_names or segmentation.class_names)
        results = segmentation.results.get(stage, {})
        if not results:
            rank_zero_info(f"ComparisonReport: no {stage} mIoU (no masks?); no report written")
            return
        results = {**self._included(["background", *names]), **results}
        out_dir = Path(self.output_dir or trainer.log_dir or trainer.default_root_dir)
        self.written = write_comparison(
            results, ["background", *names], out_dir, subtitle=describe_run(trainer, stage)
        )
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
