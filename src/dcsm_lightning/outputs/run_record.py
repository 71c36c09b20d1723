"""What produced an output folder, and whether a prediction run may write into it.

:class:`~dcsm_lightning.SegmentationWriter` resumes in a folder (files that exist are kept),
so a folder must only ever hold the outputs of one model with one set of settings. Two checks:

- :func:`check_outside_inputs` (at ``setup``): the output folder is neither the folder the
  datamodule searches for images (its ``images`` attribute, as
  :class:`~dcsm_lightning.data.TaggedImagesDataModule` has) nor inside it, or the next run
  would read this run's masks and heatmaps as new images.
- :func:`claim_output_folder` (at ``on_predict_start``, once the checkpoint's weights are
  loaded): ``output_dir/run.json`` records what produced the folder, the *checkpoint* (its path,
  and a SHA-256 of the model's class, class names and weights, so a copied checkpoint is the
  same one) and the *settings* that decide the files' content (mode, method, uncertain
  threshold, colormap, the saliency strategies, candidates, the refiners' settings). A run with
  another checkpoint or other settings is refused; with ``overwrite`` it replaces the folder's
  earlier outputs. Output folders (``masks/`` ...) without a record were written by something
  else: refused unless ``overwrite``. Which kinds of files a run writes (heatmaps, overlays) is
  not a setting: a later run may add a kind, and an image is complete only when every file of
  the run's kinds exists.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer

from dcsm_lightning.errors import UserError
from dcsm_lightning.files import save_json

RECORD_FILE = "run.json"
#: Everything a writer puts in its folder besides the record (folders, and pseudo.txt's).
OUTPUT_FOLDERS = ("masks", "heatmaps", "overlays", "scores", "SegmentationClass", "ImageSets")
_HINT = "choose another --output_dir, or --overwrite to replace its outputs"


def check_outside_inputs(output_dir: Path, datamodule: Any) -> None:
    """Refuse an output folder equal to, or inside, the datamodule's image folder.

    Raises:
        UserError: ``output_dir`` is ``datamodule.images`` or below it.
    """
    images = getattr(datamodule, "images", None)
    if images is None:
        return
    images, output = Path(images).expanduser(), Path(output_dir)
    if output.resolve().is_relative_to(images.resolve()):
        raise UserError(
            f"output folder {output} is inside the image folder {images}: its files would be "
            "read as images by the next run",
            "choose an --output_dir outside the folder of images",
        )


def model_digest(pl_module: LightningModule, class_names: list[str] | None) -> str:
    """SHA-256 of the module's class, class names and every tensor of its state dict."""
    digest = hashlib.sha256()
    kind = type(pl_module)
    digest.update(f"{kind.__module__}.{kind.__qualname__}\n{class_names}\n".encode())
    for key, value in pl_module.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{key} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy())  # no copy
    return digest.hexdigest()


def built_with(obj: object) -> str:
    """``"Class(arg=value, ...)"``: the attributes of ``obj`` named like an ``__init__``
    parameter of its class or a base (what it was built with, not state it gathers)."""
    names: set[str] = set()
    for cls in type(obj).__mro__:
        init = cls.__dict__.get("__init__")
        if init is not None and inspect.isfunction(init):
            names |= set(inspect.signature(init).parameters) - {"self"}
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(vars(obj).items()) if k in names)
    return f"{type(obj).__qualname__}({args})"


def run_record(writer: Any, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
    """The record of this run: ``{"checkpoint": {"path", "sha256"}, "settings": {...}}``."""
    segmentation = writer._segmentation
    names = writer.class_names or (segmentation.class_names if segmentation else None)
    source = getattr(segmentation, "source", None)  # SaliencyMaps, NetworkMaps, ...
    pool = getattr(source, "pool", None)
    settings = {
        "mode": writer.mode,
        "method": None if writer.method is None else str(writer.method),
        "uncertain_threshold": writer.uncertain_threshold,
        "heatmap_cmap": writer.heatmap_cmap,
        "heatmap_alpha": writer.heatmap_alpha,
        "source": type(source).__qualname__,
        "saliency": [built_with(s) for s in getattr(source, "strategies", [])],
        "candidates": repr(getattr(source, "candidates", None)),
        "pool": pool if isinstance(pool, str) or pool is None else type(pool).__qualname__,
        "refiners": [
            f"{r.name}: {getattr(r, 'settings', None)!r}"
            for r in (segmentation.refiners if segmentation else [])
        ],
    }
    path = trainer.ckpt_path
    checkpoint = {
        "path": str(path) if path else None,
        "sha256": model_digest(pl_module, names),
    }
    return {"checkpoint": checkpoint, "settings": settings}


def _outputs(output_dir: Path) -> list[str]:
    """The writer's output folders under ``output_dir`` that hold a file."""
    return [
        name
        for name in OUTPUT_FOLDERS
        if any(p.is_file() for p in (output_dir / name).rglob("*"))
    ]


def _conflict(output_dir: Path, saved: dict[str, Any], record: dict[str, Any]) -> str | None:
    """Why ``record`` may not resume in a folder ``saved`` produced (None if it may)."""
    there, here = saved.get("checkpoint") or {}, record["checkpoint"]
    if there.get("sha256") != here["sha256"]:
        return (
            f"output folder {output_dir} holds the outputs of another checkpoint "
            f"({there.get('path') or 'weights given in Python'}); this run predicts with "
            f"{here['path'] or 'weights given in Python'}"
        )
    old = saved.get("settings") or {}
    for key, value in record["settings"].items():
        if json.loads(json.dumps(value)) != old.get(key):
            return (
                f"output folder {output_dir} was written with other settings: {key} "
                f"{old.get(key)!r} there, {value!r} here"
            )
    return None


def _take(output_dir: Path, record: dict[str, Any], overwrite: bool) -> str | None:
    """Check ``output_dir`` against ``record`` and write the record; the refusal, or None."""
    path = output_dir / RECORD_FILE
    outputs = _outputs(output_dir)
    if not path.is_file():
        if outputs and not overwrite:
            return (
                f"output folder {output_dir} already holds {outputs[0]}/ that no dcsm-lightning "
                f"run recorded ({RECORD_FILE} is missing)"
            )
        save_json(path, record, overwrite=True)
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    conflict = _conflict(output_dir, saved, record) if outputs else None
    if conflict and not overwrite:
        return conflict
    if conflict:  # --overwrite: the earlier run's outputs are replaced, never mixed in
        for name in outputs:
            shutil.rmtree(output_dir / name)
    if conflict or saved != json.loads(json.dumps(record)):
        save_json(path, record, overwrite=True)
    return None


def claim_output_folder(writer: Any, trainer: Trainer, pl_module: LightningModule) -> None:
    """Record this run in ``writer.output_dir`` or refuse a folder another run produced.

    Rank 0 checks and writes ``run.json``; every rank raises the same refusal.

    Raises:
        UserError: the folder holds outputs of another checkpoint or other settings, or output
            folders without a record, and ``writer.overwrite`` is False.
    """
    record = run_record(writer, trainer, pl_module)
    refusal = None
    if trainer.is_global_zero:
        refusal = _take(Path(writer.output_dir), record, writer.overwrite)
    refusal = trainer.strategy.broadcast(refusal)
    if refusal:
        raise UserError(refusal, _HINT)
