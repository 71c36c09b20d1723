"""Where the writer's files go, and which images are finished (the resume).

:class:`OutputLayout` names every file of an image in writing order, the marker (the file
written last) at the end, so an image whose marker exists and whose other files exist is
complete: :meth:`OutputLayout.finished` drops such ids before anything is computed for them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dcsm_lightning.files import save_text

__all__ = ["PSEUDO_LIST", "FileSpec", "OutputLayout", "check_id", "safe_name"]

PSEUDO_LIST = Path("ImageSets", "Segmentation", "pseudo.txt")
_UNSAFE = re.compile(r"[^\w.-]+")

#: one file of an image: (path, kind, argument); kinds ``mask``, ``heatmap`` (argument: the
#: class name), ``overlay``, ``scores`` (argument: the candidates' names).
FileSpec = tuple[Path, str, Any]


def safe_name(name: str) -> str:
    """``name`` as a file-name part: runs of characters other than ``[\\w.-]`` -> ``_``."""
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


@dataclass(frozen=True)
class OutputLayout:
    """The files of a :class:`~dcsm_lightning.SegmentationWriter`'s output folder.

    Args:
        output_dir: the folder.
        mode: ``"predictions"`` (masks, heatmaps, overlays, scores) or ``"pseudo_labels"``
            (``SegmentationClass`` masks and the ``pseudo.txt`` list).
        heatmaps: heatmaps are part of a finished image (predictions mode).
        overlays: overlays are part of a finished image (predictions mode).
    """

    output_dir: Path
    mode: Literal["predictions", "pseudo_labels"] = "predictions"
    heatmaps: bool = True
    overlays: bool = True

    def mask_path(self, image_id: str) -> Path:
        """Where the label PNG of ``image_id`` goes in this mode."""
        folder = "masks" if self.mode == "predictions" else "SegmentationClass"
        return self.output_dir / folder / f"{image_id}.png"

    def marker_path(self, image_id: str) -> Path:
        """The file written last for an image: it exists only once the image is complete."""
        if self.mode == "predictions":
            return self.output_dir / "scores" / f"{image_id}.json"
        return self.mask_path(image_id)

    def image_files(self, image_id: str, candidates: list[str], heatmaps: bool) -> list[FileSpec]:
        """Every file of an image in writing order, the marker last.

        Args:
            image_id: a checked id (:func:`check_id`).
            candidates: the names of its candidate classes (one heatmap each).
            heatmaps: whether heatmaps are written (they need the method's maps).
        """
        if self.mode != "predictions":
            return [(self.mask_path(image_id), "mask", None)]
        files: list[FileSpec] = []
        if heatmaps:
            for name in candidates:
                path = self.output_dir / "heatmaps" / f"{image_id}_{safe_name(name)}.png"
                files.append((path, "heatmap", name))
        if self.overlays:
            files.append((self.output_dir / "overlays" / f"{image_id}.png", "overlay", None))
        files.append((self.mask_path(image_id), "mask", None))
        files.append((self.marker_path(image_id), "scores", candidates))
        return files

    def files_to_write(
        self, ids: list[str], candidates: list[list[str]], heatmaps: bool, overwrite: bool
    ) -> list[tuple[int, list[FileSpec]]]:
        """``(index in ids, files)`` of the images that miss a file (all of their files with
        ``overwrite``), files as :meth:`image_files` gives them; ``candidates``: each image's
        candidate class names. Images with every file present are left out."""
        plans = []
        for b, (image_id, names) in enumerate(zip(ids, candidates, strict=True)):
            files = self.image_files(image_id, names, heatmaps)
            todo = [f for f in files if overwrite or not f[0].exists()]
            if todo:
                plans.append((b, todo))
        return plans

    def complete(self, image_id: str) -> bool:
        """Whether every file of ``image_id`` exists: its marker and, in predictions mode,
        every file its marker's candidate list implies (a deleted heatmap or overlay makes
        the image unfinished again)."""
        marker = self.marker_path(image_id)
        if not marker.is_file():
            return False
        if self.mode != "predictions":
            return True
        try:
            candidates = json.loads(marker.read_text(encoding="utf-8"))["candidates"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        files = self.image_files(image_id, [str(c) for c in candidates], self.heatmaps)
        return all(path.is_file() for path, _, _ in files)

    def finished(self, ids: Iterable[str]) -> set[str]:
        """The ids among ``ids`` whose files are all complete (:meth:`complete`)."""
        return {image_id for image_id in ids if self.complete(check_id(image_id))}

    def done_ids(self) -> set[str]:
        """Ids whose marker exists: every image the folder holds."""
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
