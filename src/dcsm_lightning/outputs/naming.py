"""What :class:`~dcsm_lightning.SegmentationWriter` names: the method whose masks it writes,
and the class names its heatmap files are named by."""

from __future__ import annotations

from collections.abc import Sequence

from dcsm_lightning.outputs.layout import safe_name
from dcsm_lightning.segmentation.methods import SEPARATOR, Method
from dcsm_lightning.segmentation.output import SegmentationOutput

__all__ = ["default_method", "file_class_names", "output_method"]


def default_method(methods: Sequence[Method]) -> Method:
    """The mask to write when none is named: the first strategy's refined mask (``dcsm+crf``)
    if there is one, else the first mask."""
    if not methods:
        raise ValueError("the segmentation produced no masks: there is no mask to write")
    first = methods[0].strategy
    refined = [m for m in methods if m.strategy == first and m.step is not None]
    return refined[0] if refined else methods[0]


def output_method(out: SegmentationOutput, name: str) -> Method:
    """The method of ``out``'s masks named ``name`` (``"dcsm+crf"``).

    Raises:
        ValueError: no mask of that name (a refined one: is its refiner in the trainer?).
    """
    method = out.method(name)
    if method is None:
        hint = ""
        if SEPARATOR in name:
            hint = "; is its refiner (e.g. DenseCRF) in Trainer(callbacks=[...])?"
        raise ValueError(
            f"method {name!r} is not among the segmentation's masks {sorted(out.masks)}{hint}"
        )
    return method


def file_class_names(names: Sequence[str] | None, num_classes: int) -> list[str]:
    """The K class names of the heatmap files: ``names`` (K, or K + 1 with "background"
    first), or ``class_<k>`` when None.

    Raises:
        ValueError: another number of names, or names that clash as file names.
    """
    names = [f"class_{k}" for k in range(num_classes)] if names is None else names
    names = [str(n) for n in names]
    if len(names) == num_classes + 1 and names[0] == "background":
        names = names[1:]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes: {names}")
    safe = [safe_name(n) for n in names]
    if len(set(safe)) != len(safe):
        raise ValueError(f"class names clash as file names: {safe}")
    return names
