"""Where a checkpoint meets data: what a run left unset, and the class names that must match.

LightningCLI already applies the model's saved hyperparameters when given ``--ckpt_path``;
the datamodule's are not applied, and the model's ``segmentation`` is not saved (it is an
object). Checkpoints saved before the segmentation became one argument hold its options as
the module's own (``candidates``, ``min_candidates``, ...; ``name``, ``crf_in_fit`` for
``SegmentationNet``): :func:`migrate_hparams` moves them under ``segmentation``.
:func:`checkpoint_defaults` reads what a folder of new images needs to be predicted
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

import pydoc
from collections.abc import Sequence
from typing import Any

from dcsm_lightning.errors import UserError

FOLDER_DATAMODULE = "dcsm_lightning.data.TaggedImagesDataModule"
SALIENCY_SEGMENTATION = "dcsm_lightning.SaliencySegmentation"
NETWORK_SEGMENTATION = "dcsm_lightning.NetworkSegmentation"
#: (a key only that kind of module saved, its segmentation class, old key -> its init arg)
_LEGACY_SEGMENTATION = (
    ("crf_in_fit", NETWORK_SEGMENTATION,
     {"name": "name", "crf_in_fit": "segment_in_fit", "log_panels": "log_panels"}),
    ("candidates", SALIENCY_SEGMENTATION,
     {k: k for k in ("candidates", "candidate_threshold", "min_candidates", "log_panels",
                     "segment_in_fit")}),
)  # fmt: skip


def migrate_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's hyper-parameters in today's form: the segmentation options that
    checkpoints saved before ``segmentation`` became one argument kept on the module
    (``MultiLabelFCN``'s ``candidates``, ``candidate_threshold``, ``min_candidates``,
    ``log_panels``, ``segment_in_fit``; ``SegmentationNet``'s ``name``, ``crf_in_fit``,
    ``log_panels``) become ``segmentation: {class_path, init_args}``; others are returned as
    they are. A ``SaliencySegmentation`` made this way names no strategies: its options are
    defaults under the run's segmentation (see :func:`checkpoint_defaults`)."""
    legacy = _legacy_form(hparams)
    if legacy is None:
        return dict(hparams)
    _, class_path, renamed = legacy
    kept = {k: v for k, v in hparams.items() if k not in renamed}
    init_args = {new: hparams[old] for old, new in renamed.items() if old in hparams}
    return {**kept, "segmentation": {"class_path": class_path, "init_args": init_args}}


def _legacy_form(hparams: dict[str, Any]) -> tuple[str, str, dict[str, str]] | None:
    """The entry of :data:`_LEGACY_SEGMENTATION` that ``hparams`` were saved in, or None."""
    if "segmentation" in hparams:
        return None
    return next((form for form in _LEGACY_SEGMENTATION if form[0] in hparams), None)


def checkpoint_defaults(
    hparams: dict[str, Any],
    datamodule_hparams: dict[str, Any],
    data_args: dict[str, Any],
    model_args: dict[str, Any],
    data_class: str = FOLDER_DATAMODULE,
    segment: bool = True,
    model_class: str = "",
) -> dict[str, Any]:
    """Config updates ``{"data": {...}, "model": {...}}`` for the keys a run left at None.

    Args:
        hparams: the module's hyper-parameters saved in the checkpoint by ``dcsm-lightning fit``.
        datamodule_hparams: the datamodule's, saved beside them.
        data_args: the run's ``data.init_args`` (only keys present here are filled).
        model_args: the run's ``model.init_args``.
        data_class: the run's ``data.class_path``: ``class_names`` is filled only for
            :data:`FOLDER_DATAMODULE` (elsewhere None means the dataset's own list).
        segment: fill a missing segmentation (``predict``).
        model_class: the run's ``model.class_path`` (which segmentation fits it).

    Returns:
        ``data``: ``class_names`` (the model's saved names) and ``size`` (the training
        datamodule's), where the run's value is None; ``model``: ``segmentation`` =
        :func:`default_segmentation` where the run configures none and ``segment``; None
        where its only segmentation is an old checkpoint's options without strategies (see
        :func:`migrate_hparams`) and not ``segment``: such a checkpoint's ``validate``
        classified only, as it did. Empty dicts when nothing applies.
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
    segmentation = model_args.get("segmentation")
    init_args = (segmentation.get("init_args") or {}) if segmentation else {}
    if "segmentation" in model_args and segmentation is None and segment:
        model["segmentation"] = default_segmentation(model_class)
    elif _legacy_form(hparams) and not segment and init_args.get("saliency", "") is None:
        model["segmentation"] = None
    return {"data": data, "model": model}


def default_segmentation(model_class: str) -> dict[str, Any]:
    """The segmentation a run that configures none predicts with: a
    ``NetworkSegmentation`` for a module with ``segment_logits`` (a segmentation network),
    else a ``SaliencySegmentation`` (its default strategy: the paper's DCSM)."""
    network = hasattr(pydoc.locate(model_class), "segment_logits")
    return {"class_path": NETWORK_SEGMENTATION if network else SALIENCY_SEGMENTATION}


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
