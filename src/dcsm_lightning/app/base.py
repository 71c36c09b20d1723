"""``BaseCLI``: a LightningCLI whose options beat a checkpoint's and whose errors are one line.

LightningCLI (``_parse_ckpt_path``) applies the hyper-parameters saved in ``--ckpt_path`` over
the whole parsed config, so an option given in a config file or on the command line (say
``--model.segmentation.min_candidates=2``) was silently replaced by the checkpoint's value.
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

import importlib
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml
from jsonargparse import dict_to_namespace
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from dcsm_lightning.app.checkpoint_defaults import check_class_names_match, migrate_hparams
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
    tensors; their values are read once, to refuse NaN or Inf (a diverged training).

    Raises:
        UserError: the file is missing, a folder, unreadable, not a Lightning checkpoint, or
            holds NaN / Inf weights.
    """
    path = Path(path).expanduser()
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
    tensors = {k: v for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise UserError(
                f"checkpoint {path} holds NaN or Inf values in {key}",
                "its training diverged: use an earlier checkpoint, or train again with a lower "
                "learning rate",
            )
    shapes = {k: v.shape for k, v in tensors.items()}
    return SavedCheckpoint(
        str(path),
        dict(ckpt.get("hyper_parameters") or {}),
        dict(ckpt.get("datamodule_hyper_parameters") or {}),
        shapes,
    )


def option_values(args: Sequence[str], option: str) -> list[str]:
    """The values given to ``option`` (``--opt V`` or ``--opt=V``) in a command line."""
    values = []
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith(option + "="):
            values.append(arg[len(option) + 1 :])
    return values


def check_config_files(args: Sequence[str]) -> None:
    """Refuse a ``--config`` file whose YAML is not a mapping (jsonargparse says only the
    first key it misses).

    Raises:
        UserError: a config file holds a list or a plain value.
    """
    for path in option_values(args, "--config"):
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, yaml.YAMLError):
            continue  # missing or not YAML: jsonargparse names the problem
        if loaded is not None and not isinstance(loaded, dict):
            kind = "list" if isinstance(loaded, list) else f"plain {type(loaded).__name__}"
            raise UserError(
                f"config file {path} must be a mapping of options (key: value), not a {kind}",
                "write it as e.g. 'trainer:\\n  max_epochs: 10' (see configs/*.yaml)",
            )


def check_model_class(path: str, saved: str | None, built: str | None) -> None:
    """Refuse a checkpoint of one LightningModule class given to a run that builds another.

    Args:
        path: the checkpoint, for the message.
        saved: the ``_class_path`` saved in its hyper-parameters (None: unknown, not checked).
        built: the run's ``model.class_path`` (None: none given, the checkpoint's is used).

    Raises:
        UserError: both name importable classes and they differ.
    """
    if not saved or not built:
        return
    classes = []
    for name in (saved, built):
        module, _, attr = name.rpartition(".")
        try:
            classes.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError, ValueError):
            return  # jsonargparse reports a class path it cannot import
    if classes[0] is not classes[1]:
        raise UserError(
            f"checkpoint {path} holds a {saved}; this run builds a {built}",
            "give the config the checkpoint was trained with (or no --model / --config model)",
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
    :class:`~dcsm_lightning.errors.UserError` (it is never overwritten), except in a command's
    own subfolder of a run (:mod:`~dcsm_lightning.app.run_folders`: ``overwrite``), which holds
    that command's latest run."""

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
        if isinstance(args, (list, tuple)):
            check_config_files(args)
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
        model = self.config[subcommand].get("model")
        check_model_class(
            self.checkpoint.path, hparams.get("_class_path"), model.class_path if model else None
        )
        # The checkpoint's values come first, as a config file before the user's would: parse
        # the arguments again on top of them, so that everything the user gave (config files,
        # command line) overrides them, options of nested objects (the segmentation's) included.
        start = self.parser.get_defaults()
        start[f"{subcommand}.model"] = dict_to_namespace(
            _as_model_config(migrate_hparams(hparams))
        )
        if isinstance(self._args, dict):
            self.config = self.parser.parse_object(self._args, namespace=start)
        else:
            self.config = self.parser.parse_args(self._args, namespace=start)
        # The checkpoint's weights replace pretrained ones: neither load nor require them.
        init_args = self.config[subcommand].model.get("init_args")
        if init_args is not None and "pretrained" in init_args:
            init_args.pretrained = None
        self.config[subcommand].ckpt_path = os.path.expanduser(ckpt_path)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except MisconfigurationException as exc:  # Lightning's word for a bad trainer option
            accelerator = self._get(self.config_init, "trainer", {}).get("accelerator")
            if "gpu backend" in str(exc) or (
                accelerator in ("gpu", "cuda") and not torch.cuda.is_available()
            ):
                raise UserError(
                    f"trainer.accelerator {accelerator!r}: no GPU is available on this machine",
                    "use --trainer.accelerator auto (or cpu)",
                ) from exc
            raise UserError(f"trainer: {exc}") from exc
        trainer.callbacks.append(StopOnSigterm())  # last: after the writers of a batch
        return trainer

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        if self.checkpoint is None or getattr(self, "model", None) is None:
            return
        path, saved = self.checkpoint.path, self.checkpoint.shapes
        check_class_names_match(
            getattr(self.model, "hparams", {}).get("class_names"),
            self.checkpoint.hparams.get("class_names"),
            path,
        )
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
