"""``SegmentationWriter``: a prediction-writer callback that saves masks, heatmaps and scores.

It reads each batch's :class:`~dcsm_lightning.SegmentationOutput` from the trainer's
:class:`~dcsm_lightning.SaliencySegmentation` (so it works with any LightningModule
that one works with) and undoes the letterbox, so every file it writes has the size of the
image on disk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from dcsm_lightning.data.transforms import uncrop_labels
from dcsm_lightning.files import check_writable_dir, remove_stale_temp_files
from dcsm_lightning.outputs.canvas import save_figure_png
from dcsm_lightning.outputs.layout import PSEUDO_LIST, OutputLayout, check_id
from dcsm_lightning.outputs.naming import default_method, file_class_names, output_method
from dcsm_lightning.outputs.renderers import RENDERERS, ImageData
from dcsm_lightning.outputs.run_record import check_outside_inputs, claim_output_folder
from dcsm_lightning.segmentation.callback import (
    SaliencySegmentation,
    SegmentationOutput,
    find_segmentation,
)
from dcsm_lightning.segmentation.labels import uncertain_to_void
from dcsm_lightning.segmentation.methods import Method
from dcsm_lightning.segmentation.panels import GridCollector

__all__ = ["PSEUDO_LIST", "SegmentationWriter", "check_id", "default_method"]

_NO_OP = contextlib.nullcontext()


class SegmentationWriter(BasePredictionWriter):
    """Write each predicted image's mask (and heatmaps, overlay, scores) as it is predicted.

    As input it takes, for each predict batch, the
    :class:`~dcsm_lightning.SegmentationOutput` of the trainer's
    :class:`~dcsm_lightning.SaliencySegmentation` (``probs`` B x K, ``candidates`` B x K,
    ``maps`` {strategy: B x K x S x S}, ``masks`` {method: B x S x S}, the adapted batch:
    ``ids``, ``orig_size`` and ``extent`` B x 2, ``rgb`` B x S x S x 3); the module's
    ``predict_step`` output is not read. Ids may be strings or integers (``7`` -> ``7.png``).
    Each image is cut out of its letterbox (``extent``) and resized to ``orig_size`` (nearest
    for labels, bilinear for maps and the image). Where files go and which images are
    finished: :class:`~dcsm_lightning.outputs.layout.OutputLayout`; one renderer per kind of
    file: :mod:`~dcsm_lightning.outputs.renderers`.

    Layout, ``mode="predictions"``::

        output_dir/masks/<id>.png              VOC palette PNG (255 = void); an id may be a
                                               relative path (``cats/img``): folders mirror it
        output_dir/heatmaps/<id>_<class>.png   one per candidate class: its map blended
                                               over the image (``heatmap_alpha``)
        output_dir/overlays/<id>.png           mask over the image
        output_dir/scores/<id>.json            {"id", "method", "scores": {class: prob},
                                               "candidates": [class, ...]}
        output_dir/grid.png                    with ``grid`` > 0: the labelled grid of the
                                               first ``grid`` images predicted (image | ground
                                               truth | map on image | mask | + CRF)

    ``mode="pseudo_labels"`` (a VOC-style folder to train a segmentation net on)::

        output_dir/SegmentationClass/<id>.png
        output_dir/ImageSets/Segmentation/pseudo.txt   every id in SegmentationClass/

    Nothing is overwritten silently: a file that exists is kept, and the scores JSON (the
    mask, for pseudo-labels) is written last; an image whose files all exist is dropped by
    the segmentation before any map or CRF (:meth:`finished_ids`), so an interrupted run
    resumes where it stopped at little cost. ``overwrite=True`` rewrites everything.
    ``output_dir/run.json`` records the checkpoint and settings that produced the folder;
    another checkpoint or other settings are refused, and the folder may not lie inside the
    datamodule's ``images`` (:mod:`~dcsm_lightning.outputs.run_record`). Every
    file is written atomically. Under DDP each rank writes its own images; ``pseudo.txt`` is
    written by rank 0 after a barrier. The order of ``Trainer(callbacks=[...])`` does not
    matter.

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
        heatmap_alpha: opacity of the map over the image in ``heatmaps/``, in [0, 1]
            (1: the bare colour-mapped map).
        grid: write ``grid.png`` with up to this many rows, the first images predicted
            (rank 0's, predictions mode; when ``grid.png`` is missing, a resumed run segments
            these images again, without rewriting their files, so its grid is a whole run's;
            :func:`~dcsm_lightning.outputs.grid.grid_figure`: ground truth when the batches
            have masks, the map of the method's strategy, its plain and refined masks as
            segmented, before ``uncertain_threshold``); an existing ``grid.png`` is kept
            unless ``overwrite``. 0: none.

    Raises:
        ValueError: unknown ``mode``, ``uncertain_threshold`` or ``heatmap_alpha`` outside
            [0, 1], or ``grid`` < 0.
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
        heatmap_alpha: float = 0.5,
        grid: int = 0,
    ) -> None:
        super().__init__(write_interval="batch")
        if mode not in ("predictions", "pseudo_labels"):
            raise ValueError(f"mode must be 'predictions' or 'pseudo_labels', got {mode!r}")
        if uncertain_threshold is not None and not 0.0 <= uncertain_threshold <= 1.0:
            raise ValueError(f"uncertain_threshold must lie in [0, 1], got {uncertain_threshold}")
        if not 0.0 <= heatmap_alpha <= 1.0:
            raise ValueError(f"heatmap_alpha must lie in [0, 1], got {heatmap_alpha}")
        if grid < 0:
            raise ValueError(f"grid must be >= 0 (rows of grid.png; 0: none), got {grid}")
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
        self.heatmap_alpha = heatmap_alpha
        self.grid = grid
        self._reset()

    def _reset(self) -> None:
        self.written = 0  # images with at least one file written by this rank, this run
        self.skipped = 0  # images whose files all existed
        self._method: str | None = None
        self._names: list[str] | None = None
        self._warned_no_maps = False
        self._segmentation: SaliencySegmentation | None = None
        self._grid: GridCollector | None = None
        self._grid_pending = 0  # first images to segment again for a missing grid.png
        self._grid_ids: set[str] = set()  # those first images (segmented even if finished)

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
        missing = not (self.output_dir / "grid.png").exists()
        if self.mode == "predictions" and trainer.is_global_zero and missing:
            self._grid_pending = self.grid  # read by finished_ids, which overwrite never calls

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        strategy = trainer.strategy
        counts = torch.tensor([self.written, self.skipped], device=pl_module.device)
        written, skipped = (int(v) for v in strategy.reduce(counts, reduce_op="sum"))
        strategy.barrier("SegmentationWriter.on_predict_end")
        if self.mode == "pseudo_labels" and trainer.is_global_zero:
            self.layout.write_id_list()
        figure = self._grid.figure() if self._grid is not None else None
        if figure is not None and trainer.is_global_zero:
            path = self.output_dir / "grid.png"
            try:
                save_figure_png(path, figure, overwrite=self.overwrite)
                rank_zero_info(f"SegmentationWriter: {len(self._grid.rows)} images in {path}")
            except FileExistsError:
                rank_zero_info(f"SegmentationWriter: kept the existing {path} (overwrite: new)")
        rank_zero_info(
            f"SegmentationWriter: {written} images written, {skipped} skipped "
            f"(already in {self.output_dir})"
        )

    # ----------------------------------------------------------------- layout, resume
    @property
    def layout(self) -> OutputLayout:
        """The output folder's layout in the current mode and options."""
        heatmaps = self.write_heatmaps and self.mode == "predictions"
        return OutputLayout(self.output_dir, self.mode, heatmaps, self.write_overlays)

    def finished_ids(self, ids: Sequence[str]) -> set[str]:
        """The ids among ``ids`` whose files are all complete (counted as skipped): the
        segmentation drops them before computing anything (see
        :meth:`~dcsm_lightning.outputs.layout.OutputLayout.complete`)."""
        done = self.layout.finished(ids)
        if self._grid_pending:  # a resumed run draws the same grid.png as a whole run
            self._grid_ids |= set(ids[: self._grid_pending])
            done -= self._grid_ids
            self._grid_pending = max(0, self._grid_pending - len(ids))
        self.skipped += len(done)
        return done

    def done_ids(self) -> set[str]:
        """Ids whose last file exists: every image the folder holds."""
        return self.layout.done_ids()

    # ----------------------------------------------------------------- resolution
    def _resolve_method(self, out: SegmentationOutput) -> Method:
        if self._method is None:
            self._method = self.method or default_method(list(out.masks))
        return output_method(out, self._method)

    def _resolve_names(self, trainer: Any, num_classes: int) -> list[str]:
        if self._names is None:
            names = self.class_names
            if names is None and self._segmentation is not None:
                names = self._segmentation.class_names
            self._names = file_class_names(names, num_classes)
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
        cands: list[list[str]] = [[] for _ in ids]
        if predicting:
            cands = [[names[k] for k in torch.nonzero(c).flatten()] for c in candidates]
        plans = self.layout.files_to_write(ids, cands, heatmaps, self.overwrite)
        self.skipped += len(ids) - len(plans)
        if predicting and self.grid and self._grid is None:
            labels = ["background", *names]
            self._grid = GridCollector(self.grid, strategy, labels, method.step, self.heatmap_cmap)
        if self._grid is not None and (plans or self._grid_ids.intersection(ids)):
            self._grid.add(out)
        if not plans:
            return

        masks = out.masks[method].detach().cpu()
        if maps is not None:
            maps = maps.detach().cpu()
        probs = out.probs.detach().cpu().float().tolist() if predicting else None
        extents = out.batch.extent.tolist()
        orig_sizes = out.batch.orig_size.detach().cpu().tolist()
        for b, todo in plans:
            extent, orig = tuple(extents[b]), tuple(orig_sizes[b])
            if 0 in extent:
                raise ValueError(f"batch['valid'] marks no pixel of image {ids[b]!r} as valid")
            label = masks[b]
            if self.uncertain_threshold is not None:
                label = uncertain_to_void(label, maps[b], self.uncertain_threshold)
            image = ImageData(
                image_id=ids[b],
                method=method,
                label=uncrop_labels(label, extent, orig).numpy(),
                extent=extent,
                orig=orig,
                rgb=out.batch.rgb[b].detach().cpu(),
                maps=None if maps is None else maps[b],
                probs=None if probs is None else probs[b],
                names=names if predicting else None,
                cmap=self.heatmap_cmap,
                alpha=self.heatmap_alpha,
            )
            for path, kind, arg in todo:  # in plan order: the marker file comes last
                # another run writing into the same folder may have written it meanwhile:
                # keep that file (never overwrite without overwrite=True)
                with contextlib.suppress(FileExistsError) if not self.overwrite else _NO_OP:
                    RENDERERS[kind](path, image, arg, self.overwrite)
            self.written += 1
