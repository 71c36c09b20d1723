"""Image-level tag files: CSV, JSON and psa/irn's ``cls_labels.npy``, read into one table.

Every reader returns a list of :class:`TagRow` (image key, class names, line), so that the
errors found later (an unknown class, a row without a file) can name the line:

- CSV: a header row with columns ``image`` and ``tags`` (others are ignored), then one row per
  image; tags are separated by spaces, ``,``, ``;`` or ``|`` (so a class name holds none of
  them); an empty ``tags`` cell is an image with
  background only. Quoting follows Python's :mod:`csv`.
- JSON: ``{"path/img.jpg": ["cat", "dog"], ...}`` (a string of separated names also works).
- ``.npy``: the dict ``{voc_id: multi-hot vector}`` that psa / irn save as ``cls_labels.npy``
  (20 VOC classes, in VOC id order); loading it unpickles the file, so only load files you trust.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dcsm_lightning.data.classes import VOC_CLASSES

TAG_FILE_SUFFIXES = (".csv", ".json", ".npy")
_SEPARATORS = re.compile(r"[\s,;|]+")


class TagRow(NamedTuple):
    """One image's tags: ``image`` as written in the file, class ``names``, 1-based ``line``
    (the entry's position for JSON / ``.npy``)."""

    image: str
    names: tuple[str, ...]
    line: int


def split_tags(text: str) -> tuple[str, ...]:
    """``"cat dog"``, ``"cat,dog"``, ``"cat;dog"``, ``"cat | dog"`` -> ``("cat", "dog")``;
    ``""`` -> ``()``."""
    return tuple(name for name in _SEPARATORS.split(text.strip()) if name)


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"{path} line {line}: not valid UTF-8 (byte {data[exc.start]:#04x}); "
            "save the file as UTF-8"
        ) from None
    if not text.strip():
        raise ValueError(f"tag file {path} is empty; expected a header row 'image,tags'")
    return text


def _read_csv(path: Path) -> list[TagRow]:
    reader = csv.reader(io.StringIO(_decode(path), newline=""), strict=True)
    rows: list[TagRow] = []
    columns: dict[str, int] | None = None
    try:
        for fields in reader:
            line = reader.line_num
            if not any(f.strip() for f in fields):
                continue
            if columns is None:
                columns = {f.strip().lower(): i for i, f in enumerate(fields)}
                if "image" not in columns or "tags" not in columns:
                    raise ValueError(
                        f"{path} line {line}: expected a header row with columns 'image' and "
                        f"'tags', got {fields!r}"
                    )
                continue
            if len(fields) <= max(columns["image"], columns["tags"]):
                raise ValueError(
                    f"{path} line {line}: expected the columns 'image' and 'tags', got {fields!r}"
                )
            image = fields[columns["image"]].strip()
            if not image:
                raise ValueError(f"{path} line {line}: the 'image' column is empty")
            rows.append(TagRow(image, split_tags(fields[columns["tags"]]), line))
    except csv.Error as exc:
        raise ValueError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from None
    return rows


def _read_json(path: Path) -> list[TagRow]:
    def pairs(items: list[tuple[str, object]]) -> list[tuple[str, object]]:
        return items  # keep duplicate keys (a dict would drop all but the last)

    try:
        data = json.loads(_decode(path), object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, list) or any(not isinstance(item, tuple) for item in data):
        raise ValueError(f'{path}: expected an object {{"image": ["class", ...], ...}}')
    rows = []
    for index, (image, value) in enumerate(data, start=1):
        if isinstance(value, str):
            names = split_tags(value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            names = tuple(v.strip() for v in value if v.strip())
        else:
            raise ValueError(
                f"{path} entry {index} ({image!r}): expected a list of class names, got {value!r}"
            )
        rows.append(TagRow(image, names, index))
    return rows


def _read_npy(path: Path, class_names: Sequence[str] | None) -> list[TagRow]:
    try:
        table = np.load(path, allow_pickle=True).item()
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(
            f"{path}: not a cls_labels.npy dict of image id -> multi-hot ({exc})"
        ) from None
    if not isinstance(table, dict):
        raise ValueError(f"{path}: expected a dict of image id -> multi-hot vector")
    names = list(class_names or VOC_CLASSES)
    rows = []
    for index, (image, vector) in enumerate(table.items(), start=1):
        vector = np.asarray(vector).ravel()
        if vector.shape != (len(names),):
            raise ValueError(
                f"{path} entry {index} ({image!r}): {vector.size} values for "
                f"{len(names)} classes ({'class_names' if class_names else 'the 20 VOC classes'})"
            )
        rows.append(
            TagRow(str(image), tuple(names[k] for k in np.flatnonzero(vector > 0.5)), index)
        )
    return rows


def read_tag_file(
    path: str | os.PathLike, class_names: Sequence[str] | None = None
) -> list[TagRow]:
    """Read a tag file (CSV, JSON or ``cls_labels.npy``, by suffix) into rows, in file order.

    Args:
        path: the tag file.
        class_names: the K names the vectors of a ``.npy`` file index (default: VOC's 20);
            unused for CSV and JSON, which name their classes.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a folder, an unknown suffix, an empty file, a file without
            rows, bytes that are not UTF-8, a missing header, bad CSV / JSON, or the same
            image listed twice; the message names the file and line.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"tag file {path} is a folder; give the file itself")
    if not path.is_file():
        raise FileNotFoundError(f"tag file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _read_csv(path)
    elif suffix == ".json":
        rows = _read_json(path)
    elif suffix == ".npy":
        rows = _read_npy(path, class_names)
    else:
        raise ValueError(
            f"tag file {path}: unknown suffix {path.suffix!r}; use {', '.join(TAG_FILE_SUFFIXES)}"
        )
    if not rows:
        raise ValueError(f"tag file {path} has no rows (only a header?)")
    first: dict[str, int] = {}
    for row in rows:
        if row.image in first:
            raise ValueError(
                f"{path} line {row.line}: {row.image!r} is listed twice (also line "
                f"{first[row.image]}); keep one row per image"
            )
        first[row.image] = row.line
    return rows


def check_tag_names(rows: Sequence[TagRow], class_names: Sequence[str], path: object) -> None:
    """Raise if a row names a class outside ``class_names`` (names the line, suggests a match).

    Raises:
        ValueError: ``path line N: unknown class 'dgo' ... did you mean 'dog'?``.
    """
    known = set(class_names)
    for row in rows:
        for name in row.names:
            if name not in known:
                close = difflib.get_close_matches(name, list(class_names), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"{path} line {row.line}: unknown class {name!r} for {row.image!r} "
                    f"(class_names: {', '.join(class_names)}){hint}"
                )


def multi_hot(names: Sequence[str], class_names: Sequence[str]) -> np.ndarray:
    """Class names -> float32 multi-hot vector of K values in {0, 1} (K = len(class_names))."""
    index = {name: k for k, name in enumerate(class_names)}
    vector = np.zeros(len(class_names), dtype=np.float32)
    vector[[index[name] for name in names]] = 1.0
    return vector
