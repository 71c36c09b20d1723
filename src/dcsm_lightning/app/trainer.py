"""``DCSMTrainer``: Lightning's ``Trainer`` plus the methods behind ``dcsm-lightning compare``,
``pseudo-labels`` and ``synth``, and the writer options of ``predict``.

:class:`~dcsm_lightning.app.cli.DCSMLightningCLI` registers each method as a subcommand, so
jsonargparse turns its signature into options (``--help``, ``--print_config``, YAML keys); the
methods work the same when called from Python.
"""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch import LightningDataModule, LightningModule, Trainer

from dcsm_lightning.data.synthetic import export_voc
from dcsm_lightning.errors import UserError
from dcsm_lightning.outputs.comparison import ComparisonReport
from dcsm_lightning.outputs.writer import SegmentationWriter
from dcsm_lightning.segmentation.callback import SaliencySegmentation

__all__ = ["DCSMTrainer"]


class DCSMTrainer(Trainer):
    """Lightning's ``Trainer`` plus the methods behind ``compare``, ``pseudo-labels``, ``synth``
    and the writer options of ``predict``."""

    def compare(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        ckpt_path: str | None = None,
        verbose: bool = False,
        datamodule: LightningDataModule | None = None,
        output_dir: str | None = None,
        class_names: list[str] | None = None,
        include: str | list[str] | None = None,
    ) -> list[dict[str, float]]:
        """Validate every method and write the comparison table, CSV and chart.

        Args:
            model: the module (its segmentation gives the methods).
            dataloaders: validation dataloaders (else the datamodule's).
            ckpt_path: checkpoint to evaluate.
            verbose: also print Lightning's table of every logged metric (the comparison
                table is printed either way).
            datamodule: the data.
            output_dir: where comparison.md / .csv / .png go; default the run's log directory.
            class_names: the K class names shown as columns; default the segmentation's.
            include: one ``comparison.csv`` (``--include CSV``) or several (``--include+ CSV``
                repeated) of earlier runs whose rows come first (e.g. the classifier's methods
                beside a segmentation network's).

        Raises:
            UserError: the datamodule has no masks (``has_masks`` False), before any work.
        """
        if isinstance(include, str):
            include = [include]
        if datamodule is not None and not getattr(datamodule, "has_masks", True):
            raise UserError(
                "compare needs masks to score the methods: give data.masks (a folder of <id>.png)"
            )
        self.callbacks.append(ComparisonReport(output_dir, class_names, include))
        return self.validate(
            model, dataloaders, ckpt_path=ckpt_path, verbose=verbose, datamodule=datamodule
        )

    def predict(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        datamodule: LightningDataModule | None = None,
        return_predictions: bool | None = None,
        ckpt_path: str | None = None,
        output_dir: str | None = None,
        overwrite: bool = False,
        method: str | None = None,
        uncertain_threshold: float | None = None,
        write_heatmaps: bool = True,
        write_overlays: bool = True,
    ) -> Any:
        """Run inference on your data; with ``output_dir``, write masks, heatmaps and overlays.

        Args:
            model: the module.
            dataloaders: predict dataloaders (else the datamodule's).
            datamodule: the data.
            return_predictions: keep the step outputs (default: unless writing files).
            ckpt_path: checkpoint to predict with.
            output_dir: write each image's files here (``SegmentationWriter``); None writes none.
            overwrite: replace existing files (otherwise images already written are skipped).
            method: the mask to write, e.g. ``dcsm``; default ``<first strategy>+crf``.
            uncertain_threshold: pixels whose winning probability is below it become void 255.
            write_heatmaps: write ``heatmaps/``.
            write_overlays: write ``overlays/``.
        """
        options = {"overwrite": overwrite, "method": method, "threshold": uncertain_threshold}
        if output_dir is not None:
            self.callbacks.append(
                SegmentationWriter(
                    output_dir,
                    method=method,
                    overwrite=overwrite,
                    uncertain_threshold=uncertain_threshold,
                    write_heatmaps=write_heatmaps,
                    write_overlays=write_overlays,
                )
            )
            return_predictions = bool(return_predictions)
        elif options != {"overwrite": False, "method": None, "threshold": None}:
            raise ValueError("--overwrite, --method and --uncertain_threshold need --output_dir")
        return super().predict(
            model,
            dataloaders,
            datamodule=datamodule,
            return_predictions=return_predictions,
            ckpt_path=ckpt_path,
        )

    def pseudo_labels(
        self,
        output_dir: str,
        model: LightningModule | None = None,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | None = None,
        overwrite: bool = False,
        method: str | None = None,
        uncertain_threshold: float | None = None,
        candidates: Literal["labels", "predicted"] = "labels",
    ) -> None:
        """Write pseudo-labels of the training images in the VOC layout (SegmentationClass/).

        The datamodule predicts its ``predict_split``, which the command line sets to its
        ``train_split`` unless given (``--data.init_args.predict_split``).

        Args:
            output_dir: the folder of ``SegmentationClass/`` and ``ImageSets/``.
            model: the module (its segmentation gives the masks).
            datamodule: the data; its ``predict_split`` is labelled.
            ckpt_path: checkpoint to predict with.
            overwrite: replace existing files (otherwise images already written are skipped).
            method: the mask to write, e.g. ``dcsm``; default ``<first strategy>+crf``.
            uncertain_threshold: pixels whose winning probability is below it become void 255.
            candidates: ``labels`` (the image tags, as training images have them) or
                ``predicted`` (the classifier's scores).
        """
        callbacks = [*self.callbacks, *(model.configure_callbacks() if model else [])]
        for callback in callbacks:
            if isinstance(callback, SaliencySegmentation):
                callback.candidates = candidates
        writer = SegmentationWriter(
            output_dir,
            method=method,
            mode="pseudo_labels",
            overwrite=overwrite,
            uncertain_threshold=uncertain_threshold,
        )
        self.callbacks.append(writer)
        super().predict(model, datamodule=datamodule, return_predictions=False, ckpt_path=ckpt_path)

    @staticmethod
    def synth(
        out: str,
        num_train: int = 800,
        num_val: int = 200,
        seed: int = 0,
        size: int = 96,
        overwrite: bool = False,
        family: Literal["shapes", "glyphs"] = "shapes",
        model: Any = None,
    ) -> None:
        """Export the built-in synthetic scenes in the PASCAL VOC 2012 folder layout.

        Args:
            out: output folder (must be empty or absent unless ``overwrite``).
            num_train: training images.
            num_val: validation images.
            seed: dataset seed.
            size: image side in pixels.
            overwrite: write into a non-empty folder.
            family: the scene family (``shapes``: the built-in six classes; ``glyphs``: five
                small ones, see ``configs/data/glyphs.yaml``).
            model: unused (LightningCLI passes it to every subcommand).
        """
        root = export_voc(out, num_train, num_val, seed, size, overwrite, family=family)
        print(f"wrote {num_train} train and {num_val} val images to {root}")


# A subcommand is a trainer method of the same name; jsonargparse reads its signature.
setattr(DCSMTrainer, "pseudo-labels", DCSMTrainer.pseudo_labels)  # noqa: B010
