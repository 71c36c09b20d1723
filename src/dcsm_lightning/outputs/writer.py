"""``SegmentationWriter``: a prediction-writer callback that saves masks, heatmaps and scores.

It reads each batch's :class:`~dcsm_lightning.SegmentationOutput` from the trainer's
:class:`~dcsm_lightning.SaliencySegmentation` (so it works with any LightningModule
that one works with) and undoes the letterbox, so every file it writes has the size of the
image on disk.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from dcsm_lightning.data.transforms import uncrop_images, uncrop_labels, valid_extent
from dcsm_lightning.files import (
    check_writable_dir,
    remove_stale_temp_files,
    save_heatmap_png,
    save_json,
    save_label_png,
    save_overlay_png,
    save_text,
)
from dcsm_lightning.outputs.run_record import check_outside_inputs, claim_output_folder
from dcsm_lightning.segmentation.callback import (
    SaliencySegmentation,
    SegmentationOutput,
    find_segmentation,
)
from dcsm_lightning.segmentation.labels import uncertain_to_void
from dcsm_lightning.segmentation.methods import SEPARATOR, Method

PSEUDO_LIST = Path("ImageSets", "Segmentation", "pseudo.txt")
_UNSAFE = re.compile(r"[^\w.-]+")
_NO_OP = contextlib.nullcontext()


def default_method(methods: Sequence[Method]) -> Method:
    """The mask to write when none is named: the first strategy's refined mask (``dcsm+crf``)
    if there is one, else the first mask."""
    if not methods:
        raise ValueError("the segmentation produced no masks: there is no mask to write")
    first = methods[0].strategy
    refined = [m for m in methods if m.strategy == first and m.step is not None]
    return refined[0] if refined else methods[0]


def _safe_name(name: str) -> str:
    return _UNSAFE.sub("_", name).strip("_") or "_"


def check_id(image_id: str) -> str:
    """An image id as a safe relative path: ``"img"`` or ``"cats/img"`` (``/``-separated).

    Outputs mirror it (``masks/cats/img.png``), so it must stay inside the output folder.

    Raises:
        ValueError: an empty, absolute or backslash id, or one with ``.``, ``..`` or empty parts.
    """
    image_id = str(image_id)
    parts = image_id.split("/")
    if "\\" in image_id or any(part in {"", ".", ".."} for part in parts):
        raise ValueError(
            f"image id {image_id!r} must be a relative path without '.', '..', empty parts "
            "or backslashes (outputs are written under output_dir/<folder>/<id>)"
        )
    return image_id


class SegmentationWriter(BasePredictionWriter):
    """Write each predicted image's mask (and heatmaps, overlay, scores) as it is predicted.

    As input it takes, for each predict batch, the
    :class:`~dcsm_lightning.SegmentationOutput` of the trainer's
    :class:`~dcsm_lightning.SaliencySegmentation` (``probs`` B x K, ``candidates``
    B x K, ``maps`` {strategy: B x K x S x S}, ``masks`` {method: B x S x S}, and the adapted
    batch: ``ids``, ``orig_size`` B x 2, ``valid`` B x S x S or None, ``rgb`` B x S x S x 3);
    what the module's ``predict_step`` returns is not read. Ids may be strings or integers
    (``7`` -> ``7.png``); a batch without ids, sizes or ``valid`` gets the adapter's defaults.
    Each image is cut out of its letterbox and resized to ``orig_size`` (nearest for labels,
    bilinear for maps and the image).

    Layout, ``mode="predictions"``::

        output_dir/masks/<id>.png              VOC palette PNG (255 = void); an id may be a
                                               relative path (``cats/img``): folders mirror it
        output_dir/heatmaps/<id>_<class>.png   one per candidate class, colour-mapped
        output_dir/overlays/<id>.png           mask over the image
        output_dir/scores/<id>.json            {"id", "method", "scores": {class: prob},
                                               "candidates": [class, ...]}

    ``mode="pseudo_labels"`` (a VOC-style folder to train a segmentation net on)::

        output_dir/SegmentationClass/<id>.png
        output_dir/ImageSets/Segmentation/pseudo.txt   every id in SegmentationClass/

    Nothing is overwritten silently: a file that exists is kept, an image whose files all
    exist is skipped before any work, and the scores JSON (the mask, for pseudo-labels) is
    written last, so an interrupted run resumes where it stopped. ``overwrite=True``
    rewrites everything. ``output_dir/run.json`` records the checkpoint and settings that
    produced the folder; another checkpoint or other settings are refused, and the folder
    may not lie inside the datamodule's ``images`` (:mod:`~dcsm_lightning.outputs.run_record`).
    Every file is written atomically. Under DDP each rank writes its own images;
    ``pseudo.txt`` is written by rank 0 after a barrier.

    The order of ``Trainer(callbacks=[...])`` does not matter: the segmentation computes a
    batch (with its ``DenseCRF`` masks) the first time anyone asks for it.

    Args:
        output_dir: folder for all outputs (created; checked writable at ``setup``).
        class_names: K foreground names; default ``trainer.datamodule.class_names``, else
            ``class_<k>``.
        method: the entry of ``outputs["masks"]`` to write; default ``<first strategy>+crf``
            if present, else the first entry. Chosen once per predict run.
        mode: ``"predictions"`` or ``"pseudo_labels"``.
        overwrite: replace existing files.
        uncertain_threshold: pixels whose winning probability (see
            :func:`uncertain_to_void`) is below it become void (255); needs the maps of the
            method's strategy. Applies in both modes.
        write_heatmaps: write ``heatmaps/`` (predictions mode).
        write_overlays: write ``overlays/`` (predictions mode).
        heatmap_cmap: matplotlib colormap of the heatmaps.

    Raises:
        ValueError: unknown ``mode`` or ``uncertain_threshold`` outside [0, 1].
    """

    def __init__(
        self,
        output_dir: str,
        class_names: list[str] | None = None,
        method: str | None = None,
        mode: Literal["predictions", "pseudo_labels"] = "predictions",
        overwrite: bool = False,
        uncertain_threshold: float | None = None,
        write_heatmaps: bool = True,
        write_overlays: bool = True,
        heatmap_cmap: str = "jet",
    ) -> None:
        super().__init__(write_interval="batch")
        if mode not in ("predictions", "pseudo_labels"):
            raise ValueError(f"mode must be 'predictions' or 'pseudo_labels', got {mode!r}")
        if uncertain_threshold is not None and not 0.0 <= uncertain_threshold <= 1.0:
            raise ValueError(f"uncertain_threshold must lie in [0, 1], got {uncertain_threshold}")
        if not str(output_dir).strip():
            raise ValueError("output_dir is empty: give a folder")
        self.output_dir = Path(output_dir).expanduser()
        self.class_names = list(class_names) if class_names is not None else None
        self.method = method
        self.mode = mode
        self.overwrite = overwrite
        self.uncertain_threshold = uncertain_threshold
        self.write_heatmaps = write_heatmaps
        self.write_overlays = write_overlays
        self.heatmap_cmap = heatmap_cmap
        self._reset()

    def _reset(self) -> None:
        self.written = 0  # images with at least one file written by this rank, this run
        self.skipped = 0  # images whose files all existed
        self._method: str | None = None
        self._names: list[str] | None = None
        self._warned_no_maps = False
        self._segmentation: SaliencySegmentation | None = None

    # ----------------------------------------------------------------- Lightning hooks
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "predict":
            return
        self._segmentation = find_segmentation(trainer, "SegmentationWriter")
        check_outside_inputs(self.output_dir, trainer.datamodule)
        # resume: the segmentation drops finished ids before computing anything for them
        self._segmentation.outputs.finished = None if self.overwrite else self.finished_ids
        check_writable_dir(self.output_dir)
        remove_stale_temp_files(self.output_dir)  # left by a killed run

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        claim_output_folder(self, trainer, pl_module)  # run.json: one producer per folder
        self._reset()

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        strategy = trainer.strategy
        counts = torch.tensor([self.written, self.skipped], device=pl_module.device)
        written, skipped = (int(v) for v in strategy.reduce(counts, reduce_op="sum"))
        strategy.barrier("SegmentationWriter.on_predict_end")
        if self.mode == "pseudo_labels" and trainer.is_global_zero:
            self.write_id_list()
        rank_zero_info(
            f"SegmentationWriter: {written} images written, {skipped} skipped "
            f"(already in {self.output_dir})"
        )

    # ----------------------------------------------------------------- layout
    def mask_path(self, image_id: str) -> Path:
        """Where the label PNG of ``image_id`` goes in the current mode."""
        folder = "masks" if self.mode == "predictions" else "SegmentationClass"
        return self.output_dir / folder / f"{image_id}.png"

    def marker_path(self, image_id: str) -> Path:
        """The file written last for an image: it exists only once the image is complete."""
        if self.mode == "predictions":
            return self.output_dir / "scores" / f"{image_id}.json"
        return self.mask_path(image_id)

    def _prediction_files(
        self, image_id: str, cand: list[int], names: list[str], heatmaps: bool
    ) -> list[tuple[Path, str, Any]]:
        """(path, kind, argument) of every file of an image, in writing order, marker last."""
        files: list[tuple[Path, str, Any]] = []
        if heatmaps:
            for k in cand:
                name = f"{image_id}_{_safe_name(names[k])}.png"
                files.append((self.output_dir / "heatmaps" / name, "heatmap", k))
        if self.write_overlays:
            files.append((self.output_dir / "overlays" / f"{image_id}.png", "overlay", None))
        files.append((self.mask_path(image_id), "mask", None))
        files.append((self.marker_path(image_id), "scores", cand))
        return files

    def finished_ids(self, ids: Sequence[str]) -> set[str]:
        """The ids among ``ids`` whose files are all complete (counted as skipped).

        An image is complete when its marker (the file written last) exists and, in
        predictions mode, so does every file the marker's candidate list implies (a deleted
        heatmap or overlay makes its image unfinished again).
        """
        done = {image_id for image_id in ids if self._complete(check_id(image_id))}
        self.skipped += len(done)
        return done

    def _complete(self, image_id: str) -> bool:
        marker = self.marker_path(image_id)
        if not marker.is_file():
            return False
        if self.mode != "predictions":
            return True
        try:
            names = json.loads(marker.read_text(encoding="utf-8"))["candidates"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        heatmaps = self.write_heatmaps
        files = self._prediction_files(image_id, list(range(len(names))), names, heatmaps)
        return all(path.is_file() for path, _, _ in files)

    def done_ids(self) -> set[str]:
        """Ids whose last file exists: a datamodule may drop them before predicting."""
        folder = self.marker_path("x").parent
        suffix = self.marker_path("x").suffix
        return {
            p.relative_to(folder).with_suffix("").as_posix()
            for p in folder.rglob(f"*{suffix}")
            if p.is_file() and not p.name.startswith(".")
        }

    def write_id_list(self) -> Path:
        """Write ``ImageSets/Segmentation/pseudo.txt`` listing every ``SegmentationClass`` id.

        The list is an index of the folder, so it is always rewritten (atomically).
        """
        ids = sorted(self.done_ids()) if self.mode == "pseudo_labels" else []
        text = "".join(f"{i}\n" for i in ids)
        return save_text(self.output_dir / PSEUDO_LIST, text, overwrite=True)

    # ----------------------------------------------------------------- resolution
    def _resolve_method(self, out: SegmentationOutput) -> Method:
        if self._method is None:
            self._method = self.method or default_method(list(out.masks))
        method = out.method(self._method)
        if method is None:
            hint = ""
            if SEPARATOR in self._method:
                hint = "; is its refiner (e.g. DenseCRF) in Trainer(callbacks=[...])?"
            raise ValueError(
                f"method {self._method!r} is not among the segmentation's masks "
                f"{sorted(out.masks)}{hint}"
            )
        return method

    def _resolve_names(self, trainer: Any, num_classes: int) -> list[str]:
        if self._names is None:
            names = self.class_names
            if names is None and self._segmentation is not None:
                names = self._segmentation.class_names
            if names is None:
                names = [f"class_{k}" for k in range(num_classes)]
            names = [str(n) for n in names]
            if len(names) == num_classes + 1 and names[0] == "background":
                names = names[1:]
            if len(names) != num_classes:
                raise ValueError(f"{len(names)} class names for {num_classes} classes: {names}")
            safe = [_safe_name(n) for n in names]
            if len(set(safe)) != len(safe):
                raise ValueError(f"class names clash as file names: {safe}")
            self._names = names
        return self._names

    # ----------------------------------------------------------------- writing
    def write_on_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._segmentation is None:
            self._segmentation = find_segmentation(trainer, "SegmentationWriter")
        out = self._segmentation.output_for(
            trainer, pl_module, batch, batch_idx, dataloader_idx, "predict"
        )
        if out is not None:  # None: every image of the batch was finished (and skipped)
            self.write_output(trainer, out)

    def write_output(self, trainer: Any, out: SegmentationOutput) -> None:
        """Write the files of one batch's segmentation output (see the class docstring)."""
        method = self._resolve_method(out)
        ids = [check_id(i) for i in out.batch.ids]
        predicting = self.mode == "predictions"
        if predicting:
            candidates = out.candidates.detach().cpu().bool()
            names = self._resolve_names(trainer, candidates.shape[1])
        strategy = method.strategy
        maps = out.maps.get(strategy)
        heatmaps = predicting and self.write_heatmaps and maps is not None
        if predicting and self.write_heatmaps and maps is None and not self._warned_no_maps:
            self._warned_no_maps = True
            rank_zero_warn(f"no maps for {strategy!r}: heatmaps are not written")
        if self.uncertain_threshold is not None and maps is None:
            raise ValueError(
                f"uncertain_threshold needs the maps of {strategy!r}, which are absent "
                f"(has {sorted(out.maps)})"
            )

        # Decide per image which files are missing, before touching any tensor.
        plans: list[tuple[int, list[tuple[Path, str, Any]]]] = []
        for b, image_id in enumerate(ids):
            if predicting:
                cand = torch.nonzero(candidates[b]).flatten().tolist()
                files = self._prediction_files(image_id, cand, names, heatmaps)
            else:
                files = [(self.mask_path(image_id), "mask", None)]
            todo = [f for f in files if self.overwrite or not f[0].exists()]
            if todo:
                plans.append((b, todo))
            else:
                self.skipped += 1
        if not plans:
            return

        masks = out.masks[method].detach().cpu()
        if maps is not None:
            maps = maps.detach().cpu()
        probs = out.probs.detach().cpu().float() if predicting else None
        valid = out.batch.valid
        valid = valid.detach().cpu() if valid is not None else None
        rgb = out.batch.rgb
        orig_sizes = out.batch.orig_size.detach().cpu().tolist()
        size = masks.shape[-1]

        for b, todo in plans:
            orig = orig_sizes[b]
            extent = valid_extent(valid[b] if valid is not None else None, orig, size)
            label = masks[b]
            if self.uncertain_threshold is not None:
                label = uncertain_to_void(label, maps[b], self.uncertain_threshold)
            label = uncrop_labels(label, extent, orig).numpy()
            for path, kind, arg in todo:  # in plan order: the marker file comes last
                # another run writing into the same folder may have written it meanwhile:
                # keep that file (never overwrite without overwrite=True)
                with contextlib.suppress(FileExistsError) if not self.overwrite else _NO_OP:
                    if kind == "mask":
                        save_label_png(path, label, overwrite=self.overwrite)
                    elif kind == "heatmap":
                        heat = uncrop_images(maps[b, arg : arg + 1], extent, orig)[0].clamp(0, 1)
                        save_heatmap_png(
                            path, heat.numpy(), overwrite=self.overwrite, cmap=self.heatmap_cmap
                        )
                    elif kind == "overlay":
                        image = uncrop_images(rgb[b].detach().cpu().permute(2, 0, 1), extent, orig)
                        image = image.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
                        save_overlay_png(path, image.numpy(), label, overwrite=self.overwrite)
                    else:  # scores
                        record = {
                            "id": ids[b],
                            "method": method,
                            "scores": {
                                n: float(p) for n, p in zip(names, probs[b].tolist(), strict=True)
                            },
                            "candidates": [names[k] for k in arg],
                        }
                        save_json(path, record, overwrite=self.overwrite)
            self.written += 1
