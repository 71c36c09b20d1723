"""Where a checkpoint meets data: what a run left unset, and the class names that must match.

LightningCLI already applies the model's saved hyperparameters when given ``--ckpt_path``;
the datamodule's are not applied, and the saliency strategies are not saved (they are
objects). :func:`checkpoint_defaults` reads what a folder of new images needs to be predicted
with the shortest command, ``dcsm-lightning predict --ckpt_path CKPT --images DIR
--output_dir OUT``: the class names (in the order the classifier was trained with), the
letterbox size, and a saliency strategy (the paper's DCSM) when the run configures none;
``--images DIR`` itself selects :data:`FOLDER_DATAMODULE` (:mod:`dcsm_lightning.app.cli`).

Every subcommand given ``--ckpt_path`` (``fit`` resuming, ``validate``, ``test``, ``compare``,
``predict``, ``pseudo-labels``) passes :func:`check_class_names_match`: the data's class names
must be the checkpoint's, in its order, or the model's filter for one class would label
another. Data that names its classes by tag (:data:`FOLDER_DATAMODULE`) without a
``class_names`` list takes the checkpoint's (its tags are then mapped by name); other data
(VOC masks, whose values are the order) must list them in that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dcsm_lightning.errors import UserError

#: The strategy a checkpoint-only predict run uses when none is configured.
DEFAULT_SALIENCY = {"class_path": "dcsm_lightning.saliency.DCSM"}
FOLDER_DATAMODULE = "dcsm_lightning.data.TaggedImagesDataModule"


def checkpoint_defaults(
    hparams: dict[str, Any],
    datamodule_hparams: dict[str, Any],
    data_args: dict[str, Any],
    model_args: dict[str, Any],
    data_class: str = FOLDER_DATAMODULE,
    saliency: bool = True,
) -> dict[str, Any]:
    """Config updates ``{"data": {...}, "model": {...}}`` for the keys a run left at None.

    Args:
        hparams: the module's hyper-parameters saved in the checkpoint by ``dcsm-lightning fit``.
        datamodule_hparams: the datamodule's, saved beside them.
        data_args: the run's ``data.init_args`` (only keys present here are filled).
        model_args: the run's ``model.init_args``.
        data_class: the run's ``data.class_path``: ``class_names`` is filled only for
            :data:`FOLDER_DATAMODULE` (elsewhere None means the dataset's own list).
        saliency: fill a missing saliency strategy (``predict``).

    Returns:
        ``data``: ``class_names`` (the model's saved names) and ``size`` (the training
        datamodule's), where the run's value is None; ``model``: ``saliency`` =
        :data:`DEFAULT_SALIENCY` where the run configures none. Empty dicts when nothing applies.
    """
    saved = {"size": datamodule_hparams.get("size")}
    if data_class == FOLDER_DATAMODULE:
        saved["class_names"] = hparams.get("class_names")
    data = {
        key: value
        for key, value in saved.items()
        if key in data_args and data_args[key] is None and value is not None
    }
    model = {}
    if saliency and "saliency" in model_args and not model_args["saliency"]:
        model["saliency"] = DEFAULT_SALIENCY
    return {"data": data, "model": model}


def check_class_names_match(
    names: Sequence[str] | None, saved: Sequence[str] | None, path: str
) -> None:
    """Refuse a run whose class names (the data's, linked into the model) are not those of
    the checkpoint at ``path``, in the same order.

    Lists of different lengths are left to the weights' shape check; None is not checked.

    Raises:
        UserError: names the first name that differs, or says the order differs.
    """
    if names is None or saved is None or len(names) != len(saved):
        return
    names, saved = [str(n) for n in names], [str(n) for n in saved]
    if names == saved:
        return
    hint = f"the checkpoint's classes, in order: {', '.join(saved)}"
    if sorted(names) == sorted(saved):
        raise UserError(f"the data's class names are checkpoint {path}'s in another order", hint)
    here = next(n for n in names if n not in saved)
    there = next(n for n in saved if n not in names)
    raise UserError(
        f"the data's class names differ from checkpoint {path}'s: {here!r} here, {there!r} there",
        hint,
    )
