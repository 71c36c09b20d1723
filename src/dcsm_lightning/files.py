"""File output that never leaves a half-written file.

Every ``save_*`` function writes to a temporary file beside the destination and renames it
into place only once the file is complete (:func:`atomic_path`), so an interrupted run leaves
either the old file, the new file, or nothing, never a truncated one. Colours come from
:mod:`dcsm_lightning.palette`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dcsm_lightning.palette import VOC_PALETTE, blend_overlay, check_label_map, colorize_heatmap

_TMP_ATTEMPTS = 16
_HOST = re.sub(r"[^A-Za-z0-9]+", "_", socket.gethostname()) or "host"
_TEMP_NAME = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[0-9a-f]{8}\.tmp(\.\w+)?$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(folder: str | os.PathLike) -> int:
    """Remove the temporary files that killed runs on this host left under ``folder``.

    A temporary file of :func:`atomic_path` is stale when the process named in it (this host,
    that pid) no longer runs; files of running processes and of other hosts are kept.

    Returns:
        the number of files removed.
    """
    removed = 0
    for parent, _, names in os.walk(folder):
        for name in names:
            match = _TEMP_NAME.match(name)
            if match and match["host"] == _HOST and not _alive(int(match["pid"])):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(parent, name))
                    removed += 1
    return removed


def _create_temp(target: Path) -> Path:
    """Create an empty, hidden temporary file beside ``target`` (mode 0o666 minus umask).

    ``tempfile.mkstemp`` would create it 0o600, and the rename would carry that mode to the
    final file; ``os.open(..., 0o666)`` lets the user's umask decide, like a plain ``open``.
    The name keeps ``target``'s suffix so writers that infer the format from it still work,
    and names its writer (host and pid) so that :func:`remove_stale_temp_files` can tell the
    leftovers of a killed run from the files of a run in progress.
    """
    owner = f"{_HOST}-{os.getpid()}"
    for _ in range(_TMP_ATTEMPTS):
        tmp = target.with_name(f".{target.stem}.{owner}-{secrets.token_hex(4)}.tmp{target.suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, f"could not create a temporary file beside {target}")


def _commit(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move ``tmp`` onto ``target``; without ``overwrite`` never replace a file that appeared."""
    if overwrite:
        os.replace(tmp, target)
        return
    try:  # link() fails if target exists: an atomic "create if absent"
        os.link(tmp, target)
    except FileExistsError:
        raise FileExistsError(
            errno.EEXIST, f"{target} already exists; pass overwrite=True to replace it", str(target)
        ) from None
    except OSError:  # file system without hard links: check, then rename
        if target.exists():
            raise FileExistsError(
                errno.EEXIST,
                f"{target} already exists; pass overwrite=True to replace it",
                str(target),
            ) from None
        os.replace(tmp, target)
        return
    tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only on success.

    The body writes the complete file to the yielded path. If the body raises (or the process
    is interrupted by an exception), the temporary file is removed and ``path`` is untouched.
    Missing parent folders are created.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False (checked before and again
            at the final move, so a file created meanwhile is not clobbered either).
        PermissionError / NotADirectoryError / OSError: the folder cannot be created or
            written; the message names ``path`` and nothing is left behind.
    """
    target = Path(path)
    if not overwrite and target.exists():
        raise FileExistsError(
            errno.EEXIST, f"{target} already exists; pass overwrite=True to replace it", str(target)
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = _create_temp(target)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise type(exc)(exc.errno, f"cannot write {target}: {reason}", str(target)) from exc
    try:
        try:
            yield tmp_path
        except OSError as exc:  # disk full, file size limit, ...: name the file
            if exc.errno is None:
                raise
            reason = exc.strerror or str(exc)
            raise type(exc)(exc.errno, f"cannot write {target}: {reason}", str(target)) from exc
        _commit(tmp_path, target, overwrite)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()



def save_label_png(path: str | os.PathLike, labels: np.ndarray, overwrite: bool = False) -> Path:
    """Write a label map as a VOC palette PNG, atomically.

    Reading it back with PIL gives mode "P" with the same indices and the VOC palette.

    Args:
        path: destination ``.png``.
        labels: integer array H x W with values in [0, 255] (255 = void).
        overwrite: replace an existing file instead of raising ``FileExistsError``.
    """
    labels = check_label_map(labels)
    # An "L" image given a palette becomes "P" with its indices untouched; this avoids
    # Image.fromarray(..., mode="P"), whose mode argument Pillow 11.3 deprecated.
    image = Image.fromarray(np.ascontiguousarray(labels))
    image.putpalette(VOC_PALETTE.reshape(-1).tolist())
    with atomic_path(path, overwrite=overwrite) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def save_rgb_png(path: str | os.PathLike, rgb: Any, overwrite: bool = False) -> Path:
    """Write a uint8 H x W x 3 array as an RGB PNG, atomically."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8 H x W x 3, got {rgb.dtype} of shape {rgb.shape}")
    image = Image.fromarray(np.ascontiguousarray(rgb))
    with atomic_path(path, overwrite=overwrite) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def save_heatmap_png(
    path: str | os.PathLike, heat: Any, overwrite: bool = False, cmap: str = "jet"
) -> Path:
    """Write a saliency map (float H x W in [0, 1]) as a colour-mapped RGB PNG, atomically."""
    return save_rgb_png(path, colorize_heatmap(heat, cmap=cmap), overwrite=overwrite)


def save_overlay_png(
    path: str | os.PathLike,
    rgb: Any,
    labels: Any,
    alpha: float = 0.5,
    overwrite: bool = False,
) -> Path:
    """Write ``labels`` (int H x W) blended over ``rgb`` (uint8 H x W x 3) as a PNG, atomically.

    See :func:`blend_overlay` for the colours (background leaves the image unchanged).
    """
    return save_rgb_png(path, blend_overlay(rgb, labels, alpha=alpha), overwrite=overwrite)


def _jsonable(obj: Any) -> Any:
    """``json`` fallback for numpy / torch scalars and arrays and paths."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def _finite_or_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {key: _finite_or_none(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(value) for value in obj]
    return obj


def save_json(path: str | os.PathLike, obj: Any, overwrite: bool = False) -> Path:
    """Write ``obj`` as indented UTF-8 JSON, atomically.

    numpy / torch values are converted with ``.tolist()``; NaN and inf become ``null`` so the
    file is strict JSON that any parser reads.
    """
    obj = json.loads(json.dumps(obj, default=_jsonable))  # normalise to plain Python first
    text = json.dumps(_finite_or_none(obj), indent=2, allow_nan=False, ensure_ascii=False)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return Path(path)


def save_text(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Write ``text`` as UTF-8, atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and prove it is writable by creating and removing a file.

    ``os.access`` is not enough (root, ACLs, read-only mounts), so this really writes.

    Raises:
        PermissionError / NotADirectoryError / OSError: naming ``path``.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(
            errno.ENOTDIR, f"output folder {folder} is a file, not a folder", str(folder)
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = _create_temp(folder / "write-test")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise type(exc)(
            exc.errno, f"output folder {folder} is not writable: {reason}", str(folder)
        ) from exc
    return folder
