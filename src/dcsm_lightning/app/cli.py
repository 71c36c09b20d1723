"""The ``dcsm-lightning`` command: LightningCLI with four more subcommands.

``fit`` / ``validate`` / ``test`` / ``predict`` are LightningCLI's; ``compare``,
``pseudo-labels``, ``tune`` and ``synth`` are methods of
:class:`~dcsm_lightning.app.trainer.DCSMTrainer`, added through
:meth:`DCSMLightningCLI.subcommands`, so jsonargparse turns their signatures into options: each
has ``--help``, ``--print_config`` and YAML keys, and ``dcsm-lightning --help`` lists it.

- ``compare``: ``validate`` + :class:`~dcsm_lightning.ComparisonReport`
  (``--output_dir``, ``--class_names``, ``--include+ CSV`` (repeatable) for earlier rows);
- ``predict [--output_dir DIR --overwrite --method NAME --uncertain_threshold T ...]``:
  ``predict`` + :class:`~dcsm_lightning.SegmentationWriter` when ``--output_dir`` is given;
  ``--images DIR`` predicts every image under DIR with
  :class:`~dcsm_lightning.data.TaggedImagesDataModule`, the model and what the run leaves unset
  coming from ``--ckpt_path`` (:mod:`~dcsm_lightning.app.checkpoint_defaults`);
- ``pseudo-labels --output_dir DIR``: ``predict`` on the datamodule's ``train_split`` with the
  image tags as candidates, the writer in ``pseudo_labels`` mode (VOC ``SegmentationClass``
  layout);
- ``tune --ckpt_path CKPT --output_dir DIR [--num_images N | --masks DIR]``: choose the
  strategies', N's and the CRF's settings on a few labelled TRAIN images and write
  ``DIR/tuned.yaml`` for ``--config`` (:mod:`dcsm_lightning.tuning`);
- ``synth --out DIR``: export the built-in dataset in the PASCAL VOC layout.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

# Imported for their classes: jsonargparse resolves a short class name (--model=MultiLabelFCN,
# --data=TaggedImagesDataModule, --model.segmentation=SaliencySegmentation, --model.help
# MultiLabelFCN) among the subclasses it has seen.
import dcsm_lightning.data  # noqa: F401
import dcsm_lightning.models  # noqa: F401
import dcsm_lightning.segmentation.network  # noqa: F401
from dcsm_lightning import __version__
from dcsm_lightning.app.base import BaseCLI, option_values
from dcsm_lightning.app.checkpoint_defaults import FOLDER_DATAMODULE, checkpoint_defaults
from dcsm_lightning.app.error_report import PROG, run_command
from dcsm_lightning.app.help_text import PlainHelpParser
from dcsm_lightning.app.quiet import quiet_evaluation, quiet_lightning
from dcsm_lightning.app.run_folders import LOGGING, SILENT, default_output_dir, run_folder
from dcsm_lightning.app.shipped_configs import with_shipped_configs
from dcsm_lightning.app.trainer import DCSMTrainer
from dcsm_lightning.errors import UserError

#: Arguments of a subcommand's method that LightningCLI fills itself (not options).
_EVALUATE_SKIP = {"model", "dataloaders", "datamodule"}
#: Subcommands that take ``--images DIR`` and whose model may come from ``--ckpt_path`` alone.
_PREDICTING = ("predict", "pseudo-labels")
_TENSORBOARD = "lightning.pytorch.loggers.TensorBoardLogger"
#: Loggers that write into a folder of their own: moved into the command's run subfolder.
_FOLDER_LOGGERS = (_TENSORBOARD, "lightning.pytorch.loggers.CSVLogger")


class DCSMLightningCLI(BaseCLI):
    """LightningCLI with the subcommands of :class:`DCSMTrainer`; the datamodule's
    ``num_classes`` and ``class_names`` feed the model; ``pseudo-labels`` predicts the
    datamodule's ``train_split`` (``"train"`` if it has none) unless ``predict_split`` is given.
    Options beat a checkpoint's hyper-parameters and errors are one line (:class:`BaseCLI`)."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's subcommands plus ``compare``, ``pseudo-labels``, ``tune`` and ``synth``."""
        return {
            **LightningCLI.subcommands(),
            "compare": _EVALUATE_SKIP,
            "pseudo-labels": {"model", "datamodule"},
            "tune": {"model", "datamodule"},
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

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        if isinstance(args, (list, tuple)):
            # `--images DIR` stands for `--data=TaggedImagesDataModule --data.images=DIR`: as a
            # default, so that --data.* options beside it parse (a config's data still wins)
            images = option_values(args, "--images")
            subcommands = set(args) & set(_PREDICTING) if images else set()
            for subcommand in subcommands:
                data = {"class_path": FOLDER_DATAMODULE, "init_args": {"images": images[-1]}}
                self._subcommand_parsers[subcommand].set_defaults(data=data)
        super().parse_arguments(parser, args)

    def before_instantiate_classes(self) -> None:
        if self.subcommand != "fit":
            quiet_evaluation()
        self._place_outputs()
        if self.subcommand in _PREDICTING:
            self._check_predicting()
        config = self.config[self.subcommand]
        init_args = config.data.get("init_args") if config.get("data") else None
        saved = self.checkpoint
        if saved is not None and init_args is not None and config.get("model") is not None:
            model_args = config.model.get("init_args")
            self._apply_updates(
                checkpoint_defaults(
                    saved.hparams,
                    saved.datamodule_hparams,
                    vars(init_args),
                    vars(model_args) if model_args is not None else {},
                    data_class=config.data.class_path,
                    segment=self.subcommand == "predict",
                    model_class=config.model.class_path,
                )
            )

    def _place_outputs(self) -> None:
        """One folder per pipeline run (:mod:`~dcsm_lightning.app.run_folders`): given
        ``--ckpt_path``, an unset ``--output_dir`` becomes the checkpoint's run subfolder and
        the logger of ``compare`` / ``validate`` / ``test`` logs there; ``predict``,
        ``pseudo-labels`` and ``tune`` log nothing."""
        config = self.config[self.subcommand]
        if self.subcommand in SILENT:
            config.trainer.logger = False
        if self.checkpoint is None or self.subcommand not in (*LOGGING, *SILENT):
            return
        out = config.get("output_dir")
        if out is None:
            out = default_output_dir(self.checkpoint.path, self.subcommand, config.get("images"))
            if "output_dir" in config:
                config.output_dir = str(out)
        if self.subcommand in LOGGING:
            self._log_into(str(out))

    def _log_into(self, folder: str) -> None:
        """Point the run's logger at ``folder`` (no ``version_N`` below it): Lightning's
        default logger or a configured TensorBoard / CSV logger; others are left alone."""
        logger = self.config[self.subcommand].trainer.get("logger")
        placement = {"save_dir": folder, "name": "", "version": ""}
        if logger is None or logger is True:  # Lightning's default: TensorBoard (a dependency)
            logger = {"class_path": _TENSORBOARD, "init_args": placement}
            self.config = self.parser.parse_object(
                {self.subcommand: {"trainer": {"logger": logger}}}, self.config
            )
        elif logger is not False:
            for each in logger if isinstance(logger, list) else [logger]:
                if getattr(each, "class_path", None) in _FOLDER_LOGGERS:
                    for key, value in placement.items():
                        setattr(each.init_args, key, value)
        # the folder holds the command's latest run: its config.yaml is replaced with the rest
        self.save_config_kwargs = {**self.save_config_kwargs, "overwrite": True}

    def _check_predicting(self) -> None:
        """``predict`` / ``pseudo-labels``: a model and data (``--images``) are given."""
        config = self.config[self.subcommand]
        if config.get("output_dir") is None:
            raise UserError(
                f"{self.subcommand} writes nothing without --output_dir DIR or --ckpt_path CKPT",
                hint=f"give --output_dir DIR; with --ckpt_path CKPT they go to CKPT's run folder "
                f"(runs/NAME/version_N/{self.subcommand.replace('-', '_')}/)",
            )
        if config.get("model") is None:
            raise UserError(
                f"{self.subcommand} needs a model: give --ckpt_path CKPT, --config or --model"
            )
        if config.get("images") is not None:
            self._use_folder(config.images)
            config = self.config[self.subcommand]
        if config.get("data") is None:
            raise UserError(f"{self.subcommand} needs data: give --images DIR, --config or --data")
        callbacks = config.trainer.get("callbacks") or []
        if not any("ModelCheckpoint" in str(c.get("class_path")) for c in callbacks):
            # Lightning's default ModelCheckpoint would restore a state whose dirpath differs
            # and say so ("dirpath has changed"): predicting saves no checkpoints
            config.trainer.enable_checkpointing = False
        init_args = config.data.get("init_args")
        if self.subcommand == "pseudo-labels":
            if config.data.class_path == FOLDER_DATAMODULE and not init_args.get("tags"):
                raise UserError(
                    "pseudo-labels needs data.tags: the image tags are its candidates",
                    "give --data.tags FILE (CSV, JSON or cls_labels.npy)",
                )
            if init_args is not None and init_args.get("predict_split") is None:
                init_args.predict_split = init_args.get("train_split") or "train"

    def after_fit(self) -> None:
        """Print where the checkpoints are and the command that compares the methods next."""
        paths = [
            Path(path)
            for cb in self.trainer.checkpoint_callbacks
            for path in dict.fromkeys((cb.last_model_path, cb.best_model_path))
            if path
        ]
        if not self.trainer.is_global_zero or not paths:
            return
        # the newest weights: a file named last.ckpt, else the first checkpoint callback's
        last = next((path for path in paths if path.name == "last.ckpt"), paths[0])
        configs = "".join(f" --config {path}" for path in self.config.fit.get("config") or ())
        print(f"\nCheckpoints: {', '.join(map(str, dict.fromkeys(paths)))}")
        out = run_folder(last) / "compare"
        print(f"Next: {PROG} compare{configs} --ckpt_path {last}  # writes to {out}/")

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
    """Entry point of ``dcsm-lightning``; ``args`` defaults to ``sys.argv[1:]``. A
    ``--config`` that names no file but a shipped config (``synthetic``, ``data/glyphs``,
    ``configs/voc12.yaml``) reads the one inside the package."""
    args = with_shipped_configs(sys.argv[1:] if args is None else args)
    with quiet_lightning():
        return DCSMLightningCLI(
            LightningModule,
            LightningDataModule,
            trainer_class=DCSMTrainer,
            parser_class=PlainHelpParser,  # --help in plain words, not reStructuredText
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            parser_kwargs={
                "prog": PROG,  # not sys.argv[0], which is __main__.py under python -m
                "version": __version__,
                "parser_mode": "omegaconf",
                # naming a subcommand makes LightningCLI give it only its own entry
                **{name: {"parser_mode": "omegaconf"} for name in DCSMLightningCLI.subcommands()},
            },
            args=args,
        )


def console_main() -> None:
    """Console-script entry: :func:`main` with one-line user errors and an exit status (see
    :mod:`dcsm_lightning.app.error_report`; ``--debug`` or ``DCSM_DEBUG=1`` shows tracebacks)."""
    sys.exit(run_command(main))


if __name__ == "__main__":
    console_main()
