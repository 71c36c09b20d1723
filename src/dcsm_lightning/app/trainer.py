"""``DCSMTrainer``: Lightning's ``Trainer`` plus the methods behind ``dcsm-lightning compare``,
``pseudo-labels``, ``tune`` and ``synth``, and the writer options of ``predict``.

:class:`~dcsm_lightning.app.cli.DCSMLightningCLI` registers each method as a subcommand, so
jsonargparse turns its signature into options (``--help``, ``--print_config``, YAML keys); the
methods work the same when called from Python.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer

from dcsm_lightning.app.base import read_checkpoint
from dcsm_lightning.crf import DenseCRF
from dcsm_lightning.data.synthetic import export_voc
from dcsm_lightning.errors import UserError
from dcsm_lightning.outputs.comparison import ComparisonReport
from dcsm_lightning.outputs.writer import SegmentationWriter
from dcsm_lightning.segmentation.callback import SaliencySegmentation
from dcsm_lightning.tuning import Tuning, tune_segmentation, tuning_loader, write_tuning

__all__ = ["DCSMTrainer", "load_weights"]


class DCSMTrainer(Trainer):
    """Lightning's ``Trainer`` plus ``compare``, ``pseudo-labels``, ``tune`` and ``synth``.

    It also adds the writer options of ``predict``."""

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
            output_dir: where comparison.md / .csv / .png go; default the log directory (the
                command line's: the checkpoint's run folder, ``compare/``).
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
        grid: int = 8,
    ) -> Any:
        """Run inference on your data; with ``output_dir``, write masks, heatmaps and overlays.

        Args:
            model: the module.
            dataloaders: predict dataloaders (else the datamodule's).
            datamodule: the data.
            return_predictions: keep the step outputs (default: unless writing files).
            ckpt_path: checkpoint to predict with.
            output_dir: write each image's files here (``SegmentationWriter``); None writes
                none (the command line's default: the checkpoint's run folder, ``predict/``).
            overwrite: replace existing files (otherwise images already written are skipped).
            method: the mask to write, e.g. ``dcsm``; default ``<first strategy>+crf``.
            uncertain_threshold: pixels whose winning probability is below it become void 255.
            write_heatmaps: write ``heatmaps/``.
            write_overlays: write ``overlays/``.
            grid: write ``grid.png``, the labelled picture of the first ``grid`` images
                (image | ground truth | map on image | mask | + CRF); 0: none.
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
                    grid=grid,
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
        output_dir: str | None = None,
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
            output_dir: the folder of ``SegmentationClass/`` and ``ImageSets/`` (the command
                line's default: the checkpoint's run folder, ``pseudo_labels/``).
            model: the module (its segmentation gives the masks).
            datamodule: the data; its ``predict_split`` is labelled.
            ckpt_path: checkpoint to predict with.
            overwrite: replace existing files (otherwise images already written are skipped).
            method: the mask to write, e.g. ``dcsm``; default ``<first strategy>+crf``.
            uncertain_threshold: pixels whose winning probability is below it become void 255.
            candidates: ``labels`` (the image tags, as training images have them) or
                ``predicted`` (the classifier's scores).
        """
        if output_dir is None:
            raise UserError("pseudo-labels needs --output_dir DIR (or --ckpt_path CKPT)")
        callbacks = [*self.callbacks, *(model.configure_callbacks() if model else [])]
        for callback in callbacks:  # the one place pseudo-labels set their candidates
            if isinstance(callback, SaliencySegmentation):
                callback.use_candidates(candidates)
        writer = SegmentationWriter(
            output_dir,
            method=method,
            mode="pseudo_labels",
            overwrite=overwrite,
            uncertain_threshold=uncertain_threshold,
        )
        self.callbacks.append(writer)
        super().predict(model, datamodule=datamodule, return_predictions=False, ckpt_path=ckpt_path)

    def tune(
        self,
        output_dir: str | None = None,
        model: LightningModule | None = None,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | None = None,
        num_images: int = 50,
        masks: str | None = None,
        seed: int = 0,
        folds: int = 5,
        crf_workers: int | None = None,
        overwrite: bool = False,
        suffix: str = "",
    ) -> Tuning:
        """Choose the strategies', N's and the CRF's settings on a few labelled TRAIN images.

        Writes ``<output_dir>/tuned.yaml`` (give it to ``compare``, ``pseudo-labels`` or
        ``predict`` after the classifier's config: ``--config tuned.yaml``) and
        ``<output_dir>/tuning.md`` (default vs tuned on the tuning images, cross-validated);
        prints the table. The grid and the search: ``docs/tuning.md``. Validation images are
        never read.

        Args:
            output_dir: where ``tuned.yaml`` and ``tuning.md`` go (the command line's default:
                the checkpoint's run folder, ``tune/``).
            model: the classifier (its strategies, candidate rule and N are the start).
            datamodule: the data; only its ``train`` split is read.
            ckpt_path: the classifier's checkpoint (required).
            num_images: how many TRAIN images with masks to draw (with ``masks``: at most).
            masks: a folder of your own ``<image id>.png`` masks of some TRAIN images, used
                instead of the dataset's masks.
            seed: the draw's (and the folds') seed.
            folds: k of the cross-validated estimate (< 2: none).
            crf_workers: CRF worker processes (None: the available cores).
            overwrite: replace an earlier ``tuned.yaml`` / ``tuning.md``.
            suffix: appended to each strategy's name in ``tuned.yaml`` (e.g. ``_tuned``: the
                default and the tuned rows can then stand in one comparison).
        """
        if model is None or datamodule is None or ckpt_path is None or output_dir is None:
            raise UserError("tune needs --config (model and data) and --ckpt_path CKPT")
        if num_images < 1:
            raise UserError(f"--num_images must be >= 1, got {num_images}")
        for name in ("tuned.yaml", "tuning.md"):
            if (Path(output_dir) / name).exists() and not overwrite:
                raise UserError(
                    f"{Path(output_dir) / name} exists", "add --overwrite or another --output_dir"
                )
        callbacks = [*self.callbacks, *model.configure_callbacks()]
        found = [cb for cb in callbacks if isinstance(cb, SaliencySegmentation)]
        if not found:
            raise UserError(
                "tune needs saliency strategies: a config with model.segmentation, or "
                "--model.segmentation=SaliencySegmentation --model.segmentation.saliency=dcsm"
            )
        configured = next((cb for cb in callbacks if isinstance(cb, DenseCRF)), DenseCRF())
        load_weights(model, ckpt_path)
        model.to(self.strategy.root_device).eval()
        loader, source = tuning_loader(datamodule, num_images, seed, masks)
        tuning = tune_segmentation(
            model, found[0], configured.settings, loader, folds, seed, crf_workers,
            crf_backend=configured.backend,
        )  # fmt: skip
        command = "dcsm-lightning " + " ".join(sys.argv[1:])
        paths = write_tuning(tuning, output_dir, source, command.strip(), overwrite, suffix)
        print(paths["table"].read_text(encoding="utf-8"))
        print(f"tuned settings: {paths['config']}")
        return tuning

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


def load_weights(model: LightningModule, path: str) -> None:
    """Load a Lightning checkpoint's weights into ``model`` strictly (one-line errors)."""
    read_checkpoint(path)  # missing, corrupt or foreign files
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        detail = [line.strip() for line in str(err).splitlines() if line.strip()][1:2]
        raise UserError(
            f"checkpoint {path} does not fit the config's model: {' '.join(detail)[:200]}",
            "pass the config (and --model.init_args.* options) the classifier was trained with",
        ) from None


# A subcommand is a trainer method of the same name; jsonargparse reads its signature.
setattr(DCSMTrainer, "pseudo-labels", DCSMTrainer.pseudo_labels)  # noqa: B010
