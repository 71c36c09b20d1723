"""The ``dcsm-lightning`` command: LightningCLI with three more subcommands.

``fit`` / ``validate`` / ``test`` / ``predict`` are LightningCLI's; ``compare``,
``pseudo-labels`` and ``synth`` are methods of :class:`DCSMTrainer`, added through
:meth:`DCSMLightningCLI.subcommands`, so jsonargparse turns their signatures into options:
each has ``--help``, ``--print_config`` and YAML keys, and ``dcsm-lightning --help`` lists it.

- ``compare``: ``validate`` + :class:`~dcsm_lightning.comparison.ComparisonReport`
  (``--output_dir``, ``--class_names``, ``--include+ CSV`` (repeatable) for earlier rows);
- ``predict [--output_dir DIR --overwrite --method NAME --uncertain_threshold T ...]``:
  ``predict`` + :class:`~dcsm_lightning.writer.SegmentationWriter` when ``--output_dir`` is given;
  ``--images DIR`` predicts every image under DIR with
  :class:`~dcsm_lightning.data.TaggedImagesDataModule`, the model and what the run leaves unset
  coming from ``--ckpt_path`` (:mod:`~dcsm_lightning.checkpoint_defaults`);
- ``pseudo-labels --output_dir DIR``: ``predict`` on the datamodule's ``train_split`` with the
  image tags as candidates, the writer in ``pseudo_labels`` mode (VOC ``SegmentationClass``
  layout);
- ``synth --out DIR``: export the built-in dataset in the PASCAL VOC layout.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Literal

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from dcsm_lightning.checkpoint_defaults import FOLDER_DATAMODULE, checkpoint_defaults
from dcsm_lightning.cli_base import BaseCLI
from dcsm_lightning.comparison import ComparisonReport
from dcsm_lightning.data.synthetic import export_voc
from dcsm_lightning.errors import UserError, run_command
from dcsm_lightning.evaluation import SaliencySegmentation
from dcsm_lightning.writer import SegmentationWriter

_EVALUATE_SKIP = {"model", "dataloaders", "datamodule"}
#: Subcommands that take ``--images DIR`` and whose model may come from ``--ckpt_path`` alone.
_PREDICTING = ("predict", "pseudo-labels")


class DCSMTrainer(Trainer):
    """Lightning's ``Trainer`` plus the methods behind ``compare``, ``pseudo-labels``, ``synth``
    and the writer options of ``predict``."""

    def compare(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        ckpt_path: str | None = None,
        verbose: bool = True,
        datamodule: LightningDataModule | None = None,
        output_dir: str | None = None,
        class_names: list[str] | None = None,
        include: list[str] | None = None,
    ) -> list[dict[str, float]]:
        """Validate every method and write the comparison table, CSV and chart.

        Args:
            model: the module (its segmentation gives the methods).
            dataloaders: validation dataloaders (else the datamodule's).
            ckpt_path: checkpoint to evaluate.
            verbose: print the validation metrics.
            datamodule: the data.
            output_dir: where comparison.md / .csv / .png go; default the run's log directory.
            class_names: the K class names shown as columns; default the segmentation's.
            include: ``comparison.csv`` files of earlier runs whose rows come first (e.g. the
                classifier's methods beside a segmentation network's).
        """
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


class DCSMLightningCLI(BaseCLI):
    """LightningCLI with the subcommands of :class:`DCSMTrainer`; the datamodule's
    ``num_classes`` and ``class_names`` feed the model; ``pseudo-labels`` predicts the
    datamodule's ``train_split`` (``"train"`` if it has none) unless ``predict_split`` is given.
    Options beat a checkpoint's hyper-parameters and errors are one line (:class:`BaseCLI`)."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's subcommands plus ``compare``, ``pseudo-labels`` and ``synth``."""
        return {
            **LightningCLI.subcommands(),
            "compare": _EVALUATE_SKIP,
            "pseudo-labels": {"model", "datamodule"},
            "synth": {"model"},
        }

    _optional_core = False

    def _prepare_subcommand_parser(
        self, klass: type, subcommand: str, **kwargs: Any
    ) -> LightningArgumentParser:
        if subcommand in _PREDICTING:
            # the model may come from --ckpt_path and the data from --images: checked later
            self._optional_core = True
            parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
            self._optional_core = False
            parser.add_argument(
                "--images",
                type=str | None,
                default=None,
                help="predict every image under this folder (recursively; .jpg .jpeg .png "
                ".webp .bmp .tif) with TaggedImagesDataModule; the model, class names and size "
                "come from --ckpt_path",
            )
            return parser
        if subcommand != "synth":
            return super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        # synth needs no model, data or trainer: only its own options
        parser = self.init_parser(**kwargs)
        added = parser.add_method_arguments(klass, subcommand, skip={"model"})
        self._subcommand_method_arguments[subcommand] = added
        return parser

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        if not self._optional_core:
            return super().add_core_arguments_to_parser(parser)
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        defaults = {"trainer." + k: v for k, v in self.trainer_defaults.items() if k != "callbacks"}
        parser.set_defaults(defaults)
        for key, base in (("model", self._model_class), ("data", self._datamodule_class)):
            parser.add_lightning_class_args(base, key, subclass_mode=True, required=False)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for field in ("num_classes", "class_names"):
            parser.link_arguments(
                f"data.{field}", f"model.init_args.{field}", apply_on="instantiate"
            )

    def before_instantiate_classes(self) -> None:
        if self.subcommand not in _PREDICTING:
            return
        config = self.config[self.subcommand]
        if config.get("model") is None:
            raise UserError(
                f"{self.subcommand} needs a model: give --ckpt_path CKPT, --config or --model"
            )
        if config.get("images") is not None:
            self._use_folder(config.images)
            config = self.config[self.subcommand]
        if config.get("data") is None:
            raise UserError(f"{self.subcommand} needs data: give --images DIR, --config or --data")
        init_args = config.data.get("init_args")
        if self.subcommand == "pseudo-labels":
            if init_args is not None and init_args.get("predict_split") is None:
                init_args.predict_split = init_args.get("train_split") or "train"
            model_args = config.model.get("init_args")
            if model_args is not None and "candidates" in model_args:  # MultiLabelFCN's hparams
                model_args.candidates = config.candidates
            return
        ckpt_path = config.get("ckpt_path")
        if ckpt_path and os.path.isfile(ckpt_path) and init_args is not None:
            self._apply_updates(
                checkpoint_defaults(ckpt_path, vars(init_args), vars(config.model.init_args))
            )

    def _use_folder(self, images: str) -> None:
        """``--images DIR``: the datamodule becomes TaggedImagesDataModule on DIR (a config's
        datamodule options are kept where they apply)."""
        self._apply_updates({"data": {"images": images}}, data_class=FOLDER_DATAMODULE)

    def _apply_updates(self, updates: dict[str, dict[str, Any]], data_class: str = "") -> None:
        """Parse ``{"data"|"model": {init arg: value}}`` on top of the current config."""
        config = self.config[self.subcommand]
        classes = {key: (config[key].class_path if config.get(key) else "") for key in updates}
        if data_class:
            classes["data"] = data_class
        updates = {
            key: {"class_path": classes[key], "init_args": values}
            for key, values in updates.items()
            if values
        }
        if updates:
            self.config = self.parser.parse_object({self.subcommand: updates}, self.config)

    def instantiate_classes(self) -> None:
        if self.subcommand == "synth":  # nothing to build: the static method runs on the class
            self.config_init = self.config  # plain values only
            self.model = self.datamodule = None
            self.trainer = self.trainer_class  # type: ignore[assignment]
            return
        super().instantiate_classes()


def main(args: list[str] | None = None) -> DCSMLightningCLI:
    """Entry point of ``dcsm-lightning``; ``args`` defaults to ``sys.argv[1:]``."""
    with warnings.catch_warnings():
        # LightningCLI warns whenever args is given and sys.argv is not empty, as here.
        warnings.filterwarnings("ignore", message=".*args parameter is intended.*")
        return DCSMLightningCLI(
            LightningModule,
            LightningDataModule,
            trainer_class=DCSMTrainer,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            parser_kwargs={"parser_mode": "omegaconf"},
            args=args,
        )


def console_main() -> None:
    """Console-script entry: :func:`main` with one-line user errors and an exit status
    (see :mod:`dcsm_lightning.errors`; ``--debug`` or ``DCSM_DEBUG=1`` shows tracebacks)."""
    sys.exit(run_command(main))


if __name__ == "__main__":
    console_main()
