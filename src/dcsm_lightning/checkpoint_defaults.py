"""What a ``predict`` / ``pseudo-labels`` run left unset, taken from the checkpoint it loads.

LightningCLI already applies the model's saved hyperparameters when given ``--ckpt_path``;
the datamodule's are not applied, and the saliency strategies are not saved (they are
objects). :func:`checkpoint_defaults` reads what a folder of new images needs to be predicted
with the shortest command, ``dcsm-lightning predict --ckpt_path CKPT --images DIR
--output_dir OUT``: the class names (in the order the classifier was trained with), the
letterbox size, and a saliency strategy (the paper's DCSM) when the run configures none;
:func:`folder_options` spells out what ``--images DIR`` stands for.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

#: The strategy a checkpoint-only predict run uses when none is configured.
DEFAULT_SALIENCY = {"class_path": "dcsm_lightning.saliency.DCSM"}
FOLDER_DATAMODULE = "dcsm_lightning.data.TaggedImagesDataModule"
DEFAULT_MODEL = "dcsm_lightning.models.MultiLabelFCN"


def _option(args: Sequence[str], name: str) -> str | None:
    """The value of ``name VALUE`` or ``name=VALUE`` in ``args`` (None if absent)."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def folder_options(images: str, args: Sequence[str]) -> list[str]:
    """The command-line options that ``predict --images DIR`` stands for.

    ``--data=TaggedImagesDataModule --data.images=DIR`` (appended, so they win over a config's
    datamodule; its other init args are kept where they apply), and, when neither ``--config``
    nor ``--model`` is given, ``--model=<the checkpoint's model class>`` (LightningCLI then
    applies the checkpoint's hyperparameters).

    Raises:
        ValueError: no ``--ckpt_path`` and no ``--config`` / ``--model`` to say the model.
    """
    options = [f"--data={FOLDER_DATAMODULE}", f"--data.images={images}"]
    if any(_option(args, name) is not None for name in ("--config", "-c", "--model")):
        return options
    ckpt_path = _option(args, "--ckpt_path")
    if ckpt_path is None:
        raise ValueError("--images needs --ckpt_path CKPT (or a --config that gives the model)")
    if not os.path.isfile(ckpt_path):
        raise ValueError(f"checkpoint {ckpt_path} does not exist")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    model = (ckpt.get("hyper_parameters") or {}).get("_class_path", DEFAULT_MODEL)
    return [f"--model={model}", *options]


def checkpoint_defaults(
    ckpt_path: str | os.PathLike, data_args: dict[str, Any], model_args: dict[str, Any]
) -> dict[str, Any]:
    """Config updates ``{"data": {...}, "model": {...}}`` for the keys a run left at None.

    Args:
        ckpt_path: a Lightning checkpoint saved by ``dcsm-lightning fit``.
        data_args: the run's ``data.init_args`` (only keys present here are filled).
        model_args: the run's ``model.init_args``.

    Returns:
        ``data``: ``class_names`` (the model's saved names) and ``size`` (the training
        datamodule's), where the run's value is None; ``model``: ``saliency`` =
        :data:`DEFAULT_SALIENCY` where the run configures none. Empty dicts when nothing applies.
    """
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    saved = {
        "class_names": (ckpt.get("hyper_parameters") or {}).get("class_names"),
        "size": (ckpt.get("datamodule_hyper_parameters") or {}).get("size"),
    }
    data = {
        key: value
        for key, value in saved.items()
        if key in data_args and data_args[key] is None and value is not None
    }
    model = {}
    if "saliency" in model_args and not model_args["saliency"]:
        model["saliency"] = DEFAULT_SALIENCY
    return {"data": data, "model": model}
