"""What a ``predict`` / ``pseudo-labels`` run left unset, taken from the checkpoint it loads.

LightningCLI already applies the model's saved hyperparameters when given ``--ckpt_path``;
the datamodule's are not applied, and the saliency strategies are not saved (they are
objects). :func:`checkpoint_defaults` reads what a folder of new images needs to be predicted
with the shortest command, ``dcsm-lightning predict --ckpt_path CKPT --images DIR
--output_dir OUT``: the class names (in the order the classifier was trained with), the
letterbox size, and a saliency strategy (the paper's DCSM) when the run configures none;
``--images DIR`` itself selects :data:`FOLDER_DATAMODULE` (:mod:`dcsm_lightning.app.cli`).
"""

from __future__ import annotations

from typing import Any

#: The strategy a checkpoint-only predict run uses when none is configured.
DEFAULT_SALIENCY = {"class_path": "dcsm_lightning.saliency.DCSM"}
FOLDER_DATAMODULE = "dcsm_lightning.data.TaggedImagesDataModule"


def checkpoint_defaults(
    hparams: dict[str, Any],
    datamodule_hparams: dict[str, Any],
    data_args: dict[str, Any],
    model_args: dict[str, Any],
) -> dict[str, Any]:
    """Config updates ``{"data": {...}, "model": {...}}`` for the keys a run left at None.

    Args:
        hparams: the module's hyper-parameters saved in the checkpoint by ``dcsm-lightning fit``.
        datamodule_hparams: the datamodule's, saved beside them.
        data_args: the run's ``data.init_args`` (only keys present here are filled).
        model_args: the run's ``model.init_args``.

    Returns:
        ``data``: ``class_names`` (the model's saved names) and ``size`` (the training
        datamodule's), where the run's value is None; ``model``: ``saliency`` =
        :data:`DEFAULT_SALIENCY` where the run configures none. Empty dicts when nothing applies.
    """
    saved = {"class_names": hparams.get("class_names"), "size": datamodule_hparams.get("size")}
    data = {
        key: value
        for key, value in saved.items()
        if key in data_args and data_args[key] is None and value is not None
    }
    model = {}
    if "saliency" in model_args and not model_args["saliency"]:
        model["saliency"] = DEFAULT_SALIENCY
    return {"data": data, "model": model}
