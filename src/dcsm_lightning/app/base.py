"""``BaseCLI``: a LightningCLI whose options beat a checkpoint's and whose errors are one line.

LightningCLI (``_parse_ckpt_path``) applies the hyper-parameters saved in ``--ckpt_path`` over
the whole parsed config, so an option given in a config file or on the command line (say
``--model.init_args.candidates=labels``) was silently replaced by the checkpoint's value.
Here the checkpoint's hyper-parameters take the place of the model's *defaults* and the
arguments are parsed again on top of them:

    class defaults < checkpoint hyper-parameters < config files < command line

except ``model.init_args.pretrained``, which is set to None: the checkpoint's weights replace
pretrained ones, so they are neither loaded nor required (predict on a machine without them).

The checkpoint is read safely (``weights_only``) once; an unreadable file, a missing one, or
one whose tensors do not fit the model (another number of classes) is a
:class:`~dcsm_lightning.errors.UserError` naming the file. Parse errors are raised (not
printed with the whole usage) so that
:func:`~dcsm_lightning.app.error_report.run_command` prints one line.
``predict`` stops after the current batch on SIGTERM
(:class:`~dcsm_lightning.app.signals.StopOnSigterm`). The run's ``config.yaml``
(:class:`SaveRunConfig`) is saved by ``fit``, and by ``validate`` / ``test`` with a logger, only:
``predict`` and ``compare --trainer.logger=false`` write their files to ``--output_dir``, and
running them again in the same folder must not stop.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, NamedTuple

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from dcsm_lightning.app.signals import StopOnSigterm
from dcsm_lightning.errors import UserError

#: ``ckpt_path`` values that Lightning resolves itself (not file paths).
_LIGHTNING_CKPT_KEYWORDS = ("best", "last", "hpc", "registry")
_CKPT_HINT = "pass a .ckpt file saved by `dcsm-lightning fit` (runs/<name>/version_N/checkpoints/)"


class SavedCheckpoint(NamedTuple):
    """What :func:`read_checkpoint` reads of a Lightning checkpoint (no tensor data)."""

    path: str
    #: the module's saved hyper-parameters (``_class_path`` included when saved by the CLI)
    hparams: dict[str, Any]
    #: the datamodule's saved hyper-parameters (empty if none were saved)
    datamodule_hparams: dict[str, Any]
    #: state-dict key -> tensor shape
    shapes: dict[str, torch.Size]


def read_checkpoint(path: str | Path) -> SavedCheckpoint:
    """The saved hyper-parameters and the shapes of the state dict of a Lightning checkpoint.

    Reads with ``weights_only=True`` (never unpickles arbitrary objects) and memory-maps the
    tensors, so only their shapes are read.

    Raises:
        UserError: the file is missing, a folder, unreadable, or not a Lightning checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist", _CKPT_HINT)
    if not path.is_file():
        raise UserError(f"checkpoint {path} is not a file", _CKPT_HINT)
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(err):
                raise
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):
            raise UserError(
                f"checkpoint {path} holds Python objects that only unpickling could restore",
                "dcsm-lightning does not unpickle files (that can run code); re-save it from "
                "a trusted session as a plain Lightning checkpoint",
            ) from err
        raise UserError(f"cannot read checkpoint {path}: not a checkpoint", _CKPT_HINT) from err
    except Exception as err:  # any failure to read it: a corrupt, truncated or foreign file
        raise UserError(
            f"cannot read checkpoint {path}: corrupt, truncated or not a checkpoint file",
            _CKPT_HINT,
        ) from err
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise UserError(
            f"{path} is not a Lightning checkpoint (it has no 'state_dict'); "
            "weights files go to --model.init_args.pretrained",
            _CKPT_HINT,
        )
    shapes = {k: v.shape for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
    return SavedCheckpoint(
        str(path),
        dict(ckpt.get("hyper_parameters") or {}),
        dict(ckpt.get("datamodule_hyper_parameters") or {}),
        shapes,
    )


def _as_model_config(hparams: dict[str, Any]) -> dict[str, Any]:
    """Saved hyper-parameters -> a ``model`` config (``class_path`` + ``init_args``)."""
    hparams = dict(hparams)
    hparams.pop("_instantiator", None)
    if "_class_path" not in hparams:
        return hparams
    class_path = hparams.pop("_class_path")
    return {"class_path": class_path, "init_args": hparams}


class SaveRunConfig(SaveConfigCallback):
    """LightningCLI's ``config.yaml`` in the run's log folder, except for ``predict``, and for
    ``validate`` / ``test`` / ``compare`` without a logger (they would drop it in the working
    folder); an earlier run's ``config.yaml`` there is a one-line
    :class:`~dcsm_lightning.errors.UserError` (it is never overwritten)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        evaluation_without_logger = stage != "fit" and trainer.logger is None
        if stage == "predict" or evaluation_without_logger or self.already_saved:
            return
        if self.save_to_log_dir and not self.overwrite:
            path = Path(trainer.log_dir or ".") / self.config_filename
            if trainer.strategy.broadcast(trainer.is_global_zero and path.is_file()):
                raise UserError(
                    f"{path} exists: an earlier run saved its config there",
                    "give this run its own folder: --trainer.default_root_dir DIR, or a "
                    "logger that versions its runs (configs/*.yaml have one)",
                )
        super().setup(trainer, pl_module, stage)


class BaseCLI(LightningCLI):
    """LightningCLI: command-line and config options win over ``--ckpt_path``'s
    hyper-parameters; parse errors and checkpoint problems raise one-line errors."""

    _args: Any = None
    #: the ``--ckpt_path`` file as read before instantiation (None without one)
    checkpoint: SavedCheckpoint | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_callback", SaveRunConfig)
        super().__init__(*args, **kwargs)

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        kwargs.setdefault("exit_on_error", False)  # raise ArgumentError: error_report.py prints it
        return super().init_parser(**kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self._args = args
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if not ckpt_path or str(ckpt_path).split(":")[0] in _LIGHTNING_CKPT_KEYWORDS:
            return super()._parse_ckpt_path()
        self.checkpoint = read_checkpoint(ckpt_path)
        hparams = self.checkpoint.hparams
        if not hparams:
            return
        # The checkpoint's values become the model's defaults; parse the arguments again so
        # that everything the user gave (config files, command line) overrides them.
        self._subcommand_parsers[subcommand].set_defaults(model=_as_model_config(hparams))
        if isinstance(self._args, dict):
            self.config = self.parser.parse_object(self._args)
        else:
            self.config = self.parser.parse_args(self._args)
        # The checkpoint's weights replace pretrained ones: neither load nor require them.
        init_args = self.config[subcommand].model.get("init_args")
        if init_args is not None and "pretrained" in init_args:
            init_args.pretrained = None

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks.append(StopOnSigterm())  # last: after the writers of a batch
        return trainer

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        if self.checkpoint is None or getattr(self, "model", None) is None:
            return
        path, saved = self.checkpoint.path, self.checkpoint.shapes
        for key, value in self.model.state_dict().items():
            shape = value.shape
            if key in saved and saved[key] != shape:
                classes = getattr(self.model, "hparams", {}).get("num_classes")
                what = f" (the data has {classes} classes)" if classes is not None else ""
                raise UserError(
                    f"checkpoint {path} does not fit this model: {key} is "
                    f"{tuple(saved[key])} there, {tuple(shape)} here{what}",
                    "use a checkpoint trained on the same classes and backbone, or start "
                    "from --model.init_args.pretrained",
                )
