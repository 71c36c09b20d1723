"""Class name lists, their validation, and image-level labels from masks.

Class ``k`` of a name list (0-based) is label ``k + 1`` in the masks; 0 is background and 255
is void, so a list holds at most 254 names.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: The 20 PASCAL VOC foreground classes, in the order of the VOC label ids 1..20.
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

#: The classes of :class:`~dcsm_lightning.data.synthetic.SyntheticScenes`: each is a shape
#: drawn with its own texture (disc/stripes, square/plain, triangle/dots, ring/spokes,
#: cross/grid, star/radial shading).
SYNTHETIC_CLASSES: tuple[str, ...] = (
    "disc",
    "square",
    "triangle",
    "ring",
    "cross",
    "star",
)

MAX_CLASSES = 254  # labels 1..254; 0 is background and 255 void


def check_class_names(names: Sequence[str], field: str = "class_names") -> tuple[str, ...]:
    """Validate a list of foreground class names and return it as a tuple.

    A valid name is a non-empty string without surrounding whitespace or control characters
    (names are written one per line to ``class_names.txt``), without the tag separators
    ``,`` ``;`` ``|``, is not ``background``, which is the implicit label 0, and differs from
    every other name by more than letter case (``Disc`` / ``disc`` would be two classes).

    Args:
        names: the K foreground names, in label order (name ``k`` is mask value ``k + 1``).
        field: the argument name used in error messages.

    Raises:
        ValueError: ``names`` is a plain string, empty, longer than 254, or holds a non-string,
            blank, padded, control-character, separator, ``background``, duplicate or
            case-only-different name; the message names ``field``.
    """
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise ValueError(f"{field} must be a list of class names, got {type(names).__name__}")
    if not names:
        raise ValueError(f"{field} is empty; give at least one foreground class name")
    if len(names) > MAX_CLASSES:
        raise ValueError(f"{field} has {len(names)} names; masks allow at most {MAX_CLASSES}")
    seen: dict[str, str] = {}  # casefolded -> as given
    for index, name in enumerate(names):
        where = f"{field}[{index}]"
        if not isinstance(name, str):
            raise ValueError(f"{where} must be a string, got {type(name).__name__} {name!r}")
        if not name or name != name.strip():
            raise ValueError(f"{where} = {name!r} is blank or has surrounding whitespace")
        if any(not ch.isprintable() for ch in name):
            raise ValueError(f"{where} = {name!r} contains control characters")
        if name.lower() == "background":
            raise ValueError(f"{where} = {name!r}: background is label 0 and must not be listed")
        if any(sep in name for sep in ",;|"):
            raise ValueError(f"{where} = {name!r} contains ',', ';' or '|', which separate tags")
        if name in seen.values():
            raise ValueError(f"{field} lists {name!r} twice")
        other = seen.setdefault(name.casefold(), name)
        if other != name:
            raise ValueError(
                f"{field}: {other!r} and {name!r} differ only in case; use one spelling"
            )
    return tuple(names)


def names_for_classes(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    """The K class names a model logs with: ``class_names``, or ``class_<k>`` when None.

    Raises:
        ValueError: ``class_names`` does not hold exactly ``num_classes`` names.
    """
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(
            f"class_names has {len(class_names)} names but num_classes is {num_classes}"
        )
    return list(class_names or [f"class_{k}" for k in range(num_classes)])


def labels_from_mask(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Multi-hot image tags from a label map: class k is present where ``mask == k + 1``.

    Args:
        mask: int H x W; 0 (background) and 255 (void) are ignored.
        num_classes: K.

    Returns:
        float32 array of K values in {0, 1}.
    """
    present = np.bincount(np.asarray(mask, dtype=np.int64).ravel(), minlength=256)
    return (present[1 : num_classes + 1] > 0).astype(np.float32)
