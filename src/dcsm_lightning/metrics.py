"""Segmentation mIoU over a split from one confusion matrix (Shimoda & Yanai 2016, Sec. 4.1).

``IoU_c = TP_c / (TP_c + FP_c + FN_c)`` from a single confusion matrix accumulated over the
whole split (not averaged per image); mIoU is the mean over the classes that occur in the
split's targets or predictions. Counting is torchmetrics' own
(:func:`torchmetrics.functional.classification.multiclass_confusion_matrix`); the class and the
functional twin share the private ``_segmentation_iou_*`` helpers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import multiclass_confusion_matrix

__all__ = ["SegmentationIoU", "iou_from_confusion", "segmentation_confusion", "segmentation_iou"]


def _segmentation_iou_validate_args(num_classes: int, ignore_index: int | None) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"Expected `num_classes` to be an int >= 1, got {num_classes!r}.")
    if ignore_index is not None and (
        isinstance(ignore_index, bool) or not isinstance(ignore_index, int)
    ):
        raise ValueError(f"Expected `ignore_index` to be None or an int, got {ignore_index!r}.")


def _segmentation_iou_validate_tensors(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None
) -> None:
    for name, value in (("pred", pred), ("target", target)):
        if not isinstance(value, Tensor):
            raise ValueError(f"Expected `{name}` to be a torch.Tensor, got {type(value).__name__}.")
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise ValueError(
                f"Expected `{name}` of an integer dtype (label ids), got {value.dtype}."
            )
        if value.ndim not in (2, 3):
            raise ValueError(
                f"Expected `{name}` of shape (H, W) or (B, H, W), got shape {tuple(value.shape)}."
            )
    if pred.shape != target.shape:
        raise ValueError(
            f"Expected `pred` and `target` of the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}."
        )
    for name, value in (("pred", pred), ("target", target)):
        bad = (value < 0) | (value >= num_classes)
        if ignore_index is not None:
            bad &= value != ignore_index
        if bad.any():
            raise ValueError(
                f"Expected `{name}` values in [0, {num_classes}) or ignore_index={ignore_index}, "
                f"found {value[bad].unique()[:10].tolist()}."
            )


def _segmentation_iou_update(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None
) -> Tensor:
    """Confusion counts of one batch, int64 (K + 1, K + 1): rows = target, cols = prediction.

    Target pixels equal to ``ignore_index`` are dropped. A prediction of ``ignore_index``
    (outside [0, K)) on a counted pixel lands in the extra column K: a miss (FN) for the true
    class and a false positive for none. Row K stays zero.
    """
    pred = pred.to(target.device)
    if ignore_index is not None and not 0 <= ignore_index < num_classes:
        pred = pred.masked_fill(pred == ignore_index, num_classes)
    return multiclass_confusion_matrix(
        pred, target, num_classes + 1, ignore_index=ignore_index, validate_args=False
    )


def _segmentation_iou_compute(confmat: Tensor, per_class: bool) -> Tensor:
    """(L + 1, L + 1) counts -> float32 IoU per label (L,) or their mean (scalar); NaN if absent."""
    dtype = torch.float32 if confmat.device.type == "mps" else torch.float64
    counts = confmat.to(dtype)
    num_classes = counts.shape[0] - 1
    tp = counts.diagonal()[:num_classes]
    gt = counts[:num_classes].sum(dim=1)  # TP + FN (FN includes void predictions)
    predicted = counts[:, :num_classes].sum(dim=0)  # TP + FP
    union = gt + predicted - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(union, float("nan")))
    if per_class:
        return iou.to(torch.float32)
    present = union > 0
    miou = iou[present].mean() if present.any() else iou.new_tensor(float("nan"))
    return miou.to(torch.float32)


def segmentation_iou(
    pred: Tensor,
    target: Tensor,
    num_classes: int,
    ignore_index: int | None = 255,
    per_class: bool = False,
) -> Tensor:
    """Per-class IoU and mIoU of label maps from one confusion matrix (functional form).

    See :class:`SegmentationIoU` for the definition; this evaluates one set of label maps.

    Args:
        pred: integer tensor of shape (H, W) or (B, H, W), values in [0, num_classes) or
            ``ignore_index``.
        target: integer tensor of the same shape and value range.
        num_classes: number of label ids counted, background included: K foreground classes
            + 1 (21 for PASCAL VOC: background + 20 classes).
        ignore_index: target id that is not counted (VOC void 255); None counts every pixel.
        per_class: return the IoU of every label instead of their mean.

    Returns:
        float32 tensor in [0, 1]: the mIoU (a scalar; NaN if every label is absent) or, with
        ``per_class=True``, the IoU of each label, shape ``(num_classes,)``, NaN for labels
        absent from both ``pred`` and ``target``.

    Raises:
        ValueError: see :class:`SegmentationIoU`.
    """
    _segmentation_iou_validate_args(num_classes, ignore_index)
    _segmentation_iou_validate_tensors(pred, target, num_classes, ignore_index)
    confmat = _segmentation_iou_update(pred, target, num_classes, ignore_index)
    return _segmentation_iou_compute(confmat, per_class)


def segmentation_confusion(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = 255
) -> Tensor:
    """The confusion counts behind :func:`segmentation_iou`, to be summed over any images.

    Args:
        pred / target / num_classes / ignore_index: as :func:`segmentation_iou`.

    Returns:
        int64 (num_classes + 1, num_classes + 1): rows = target, columns = prediction, the
        extra column counts predictions of ``ignore_index`` on counted pixels.
    """
    _segmentation_iou_validate_args(num_classes, ignore_index)
    _segmentation_iou_validate_tensors(pred, target, num_classes, ignore_index)
    return _segmentation_iou_update(pred, target, num_classes, ignore_index)


def iou_from_confusion(confmat: Tensor, per_class: bool = False) -> Tensor:
    """:func:`segmentation_iou` from summed :func:`segmentation_confusion` counts: the mIoU
    (scalar) or the IoU per label (``per_class``), float32 in [0, 1], NaN where absent."""
    return _segmentation_iou_compute(confmat, per_class)


class SegmentationIoU(Metric):
    """Intersection over union per class and its mean, from one confusion matrix over a split.

    ``IoU_c = TP_c / (TP_c + FP_c + FN_c)`` where the counts come from a single confusion matrix
    (torchmetrics' counting, plus one column for void predictions) accumulated by every
    ``update`` over the whole split (PASCAL VOC's protocol; Shimoda & Yanai 2016, Sec. 4.1),
    not averaged per image. mIoU is the mean over
    the classes whose union ``TP + FP + FN`` is non-empty over the split. Target pixels equal
    to ``ignore_index`` are not counted; a prediction of ``ignore_index`` on a counted pixel
    is a miss for the true class. The matrix is a state with ``dist_reduce_fx="sum"``, so
    under DDP ``compute`` returns the scores of all processes' data together.

    Why not torchmetrics' ``JaccardIndex`` (``task="multiclass", average="none",
    ignore_index=255``)? Where both are defined, the two agree (tested). They differ in two
    places that matter for weak supervision: a class absent from the split's targets and
    predictions is NaN here and left out of the mIoU, where ``JaccardIndex`` scores it 0 (or
    ``zero_division``) and averages it in, so small VOC subsets and synthetic splits would be
    pulled down by classes they do not contain; and a prediction may itself be void (255: a
    pixel a post-processing step leaves unlabelled, e.g. uncertain pseudo-labels), which is
    counted as a miss of the true class here, while ``JaccardIndex`` refuses such predictions.

    As input to ``forward`` and ``update`` the metric accepts the following input:

    - ``pred`` (:class:`~torch.Tensor`): integer label map of shape ``(H, W)`` or
      ``(B, H, W)`` with values in ``[0, num_classes)`` or ``ignore_index``
    - ``target`` (:class:`~torch.Tensor`): integer label map of the same shape and values

    As output of ``forward`` and ``compute`` the metric returns the following output:

    - ``miou`` (:class:`~torch.Tensor`): a float32 scalar in [0, 1], NaN if every label is
      absent; or, with ``per_class=True``, a float32 tensor of shape ``(num_classes,)`` in
      [0, 1] with the IoU of each label, NaN for labels absent from targets and predictions.
      ``self.log(name, metric)`` works as for any torchmetrics metric (scalar form).

    Args:
        num_classes: number of label ids counted, background included: K foreground classes
            + 1 (21 for PASCAL VOC: background + 20 classes; 7 for the built-in 6 shapes).
            Ids run over ``[0, num_classes)``; elsewhere in this library K counts foreground
            classes only.
        ignore_index: target id that is not counted (VOC void 255); None counts every pixel.
        per_class: ``compute`` returns the IoU of every label (like torchmetrics'
            ``MeanIoU(per_class=True)``) instead of their mean.
        kwargs: additional keyword arguments of :class:`~torchmetrics.Metric`.

    Raises:
        ValueError: If ``num_classes`` is not an int >= 1.
        ValueError: If ``ignore_index`` is neither None nor an int.
        ValueError: If ``pred`` or ``target`` is not an integer tensor of shape (H, W) or (B, H, W).
        ValueError: If ``pred`` and ``target`` differ in shape.
        ValueError: If ``pred`` or ``target`` holds values outside [0, num_classes) that are
            not ``ignore_index``.

    Example:
        >>> import torch
        >>> from dcsm_lightning.metrics import SegmentationIoU
        >>> g = torch.Generator().manual_seed(42)
        >>> target = torch.randint(0, 3, (2, 4, 4), generator=g)
        >>> pred = torch.randint(0, 3, (2, 4, 4), generator=g)
        >>> target[:, 0] = 255  # void row
        >>> metric = SegmentationIoU(num_classes=4, per_class=True)
        >>> metric.update(pred, target)
        >>> metric.compute()
        tensor([0.0833, 0.3846, 0.1333,    nan])
        >>> miou = SegmentationIoU(num_classes=4)
        >>> miou.update(pred, target)
        >>> miou.compute()
        tensor(0.2004)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    confmat: Tensor

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = 255,
        per_class: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _segmentation_iou_validate_args(num_classes, ignore_index)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.per_class = per_class
        self.add_state(
            "confmat",
            torch.zeros(num_classes + 1, num_classes + 1, dtype=torch.long),
            dist_reduce_fx="sum",
        )

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch of label maps (see the class docstring for shapes) to the matrix."""
        _segmentation_iou_validate_tensors(pred, target, self.num_classes, self.ignore_index)
        self.confmat += _segmentation_iou_update(
            pred.to(self.confmat.device),
            target.to(self.confmat.device),
            self.num_classes,
            self.ignore_index,
        )

    def compute(self) -> Tensor:
        """mIoU (or per-label IoU) over everything since the last ``reset`` (all DDP ranks)."""
        return _segmentation_iou_compute(self.confmat, self.per_class)
