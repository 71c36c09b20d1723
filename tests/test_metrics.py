from __future__ import annotations

import doctest
import multiprocessing
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torchmetrics.classification import MulticlassJaccardIndex

import dcsm_lightning.metrics as metrics_module
from dcsm_lightning.metrics import SegmentationIoU, segmentation_iou

K = 6  # classes 0..5: class 4 only ever predicted (IoU 0), class 5 never present (NaN)


def _random_maps(seed: int, n: int = 4, size: int = 12, void_pred: bool = False):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 4, (n, size, size), generator=g)
    pred = torch.where(
        torch.rand(n, size, size, generator=g) < 0.6,
        target,
        torch.randint(0, 5, (n, size, size), generator=g),
    )
    target[torch.rand(n, size, size, generator=g) < 0.15] = 255  # VOC void pixels
    if void_pred:
        pred[torch.rand(n, size, size, generator=g) < 0.05] = 255  # e.g. unlabelled padding
    return pred, target


def _numpy_reference(pred: np.ndarray, target: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    """The VOC devkit recipe: one confusion matrix, IoU = TP / (TP + FP + FN)."""
    keep = target != 255
    p, t = pred[keep].astype(np.int64), target[keep].astype(np.int64)
    void = p == 255
    conf = np.bincount(t[~void] * k + p[~void], minlength=k * k).reshape(k, k)
    missed_void = np.bincount(t[void], minlength=k)  # void predictions: misses of the true class
    tp = np.diag(conf).astype(np.float64)
    fn = conf.sum(1) - tp + missed_void
    fp = conf.sum(0) - tp
    union = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    return float(np.nanmean(iou)), iou


@pytest.mark.parametrize("void_pred", [False, True])
def test_matches_numpy_confusion_matrix(void_pred: bool) -> None:
    metric = SegmentationIoU(num_classes=K, per_class=True)
    mean_metric = SegmentationIoU(num_classes=K)
    preds, targets = [], []
    for seed in range(3):  # several updates = one matrix over the split
        pred, target = _random_maps(seed, void_pred=void_pred)
        metric.update(pred, target)
        mean_metric.update(pred, target)
        preds.append(pred)
        targets.append(target)
    per_class, miou_t = metric.compute(), mean_metric.compute()
    miou, iou = _numpy_reference(torch.cat(preds).numpy(), torch.cat(targets).numpy(), K)
    np.testing.assert_allclose(per_class.numpy(), iou, rtol=1e-6)
    assert per_class.shape == (K,) and per_class.dtype == torch.float32
    assert torch.isnan(per_class[5]) and per_class[4] == 0
    assert miou_t.ndim == 0 and miou_t.dtype == torch.float32
    assert miou_t.item() == pytest.approx(miou, rel=1e-6)
    # the functional twin gives the same on the whole split at once
    pred_all, target_all = torch.cat(preds), torch.cat(targets)
    twin = segmentation_iou(pred_all, target_all, K, per_class=True)
    torch.testing.assert_close(twin, per_class, equal_nan=True)
    torch.testing.assert_close(segmentation_iou(pred_all, target_all, K), miou_t)


def test_split_matrix_is_not_a_per_image_average() -> None:
    pred, target = _random_maps(7, n=4)
    whole = segmentation_iou(pred, target, K)
    per_image = torch.stack([segmentation_iou(p, t, K) for p, t in zip(pred, target, strict=True)])
    metric = SegmentationIoU(K)
    for p, t in zip(pred, target, strict=True):  # (H, W) inputs
        metric.update(p, t)
    torch.testing.assert_close(metric.compute(), whole)
    assert not torch.isclose(per_image.mean(), whole)


def test_agrees_with_torchmetrics_jaccard_on_present_classes() -> None:
    pred, target = _random_maps(3)
    ours = segmentation_iou(pred, target, K, per_class=True)
    theirs = MulticlassJaccardIndex(num_classes=K, average="none", ignore_index=255)(pred, target)
    present = ~torch.isnan(ours)
    torch.testing.assert_close(ours[present], theirs[present])


def test_reset_forward_and_all_absent() -> None:
    metric = SegmentationIoU(3, per_class=True)
    pred = torch.tensor([[0, 1], [1, 2]])
    target = torch.tensor([[0, 1], [2, 255]])
    batch = metric(pred, target)  # forward = this batch's scores, and accumulates
    torch.testing.assert_close(batch, torch.tensor([1.0, 0.5, 0.0]))
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert torch.isnan(metric.compute()).all()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert torch.isnan(SegmentationIoU(3).compute())


def test_logs_like_any_torchmetrics_metric(tmp_path) -> None:
    """``self.log(name, metric)`` accepts it: compute() is a scalar tensor."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    pred, target = _random_maps(5, n=4)

    class Logs(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.miou = SegmentationIoU(K)

        def validation_step(self, batch, batch_idx) -> None:
            self.miou.update(pred[batch_idx], target[batch_idx])
            self.log("val/miou", self.miou)

    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    out = trainer.validate(Logs(), DataLoader(torch.zeros(4, 1)), verbose=False)
    assert out[0]["val/miou"] == pytest.approx(segmentation_iou(pred, target, K).item(), rel=1e-6)


@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        (
            torch.zeros(2, 3, 3, dtype=torch.long),
            torch.zeros(2, 3, 4, dtype=torch.long),
            "same shape",
        ),
        (torch.zeros(2, 3, 3), torch.zeros(2, 3, 3, dtype=torch.long), "pred.*integer"),
        (
            torch.zeros(2, 3, 3, dtype=torch.long),
            torch.zeros(2, 3, 3, dtype=torch.bool),
            "target.*integer",
        ),
        (torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long), "shape"),
        (
            torch.full((3, 3), K, dtype=torch.long),
            torch.zeros(3, 3, dtype=torch.long),
            "pred.*values",
        ),
        (
            torch.full((3, 3), -1, dtype=torch.long),
            torch.zeros(3, 3, dtype=torch.long),
            "pred.*values",
        ),
        (
            torch.zeros(3, 3, dtype=torch.long),
            torch.full((3, 3), 254, dtype=torch.long),
            "target.*values",
        ),
    ],
)
def test_bad_inputs(pred, target, match) -> None:
    with pytest.raises(ValueError, match=match):
        SegmentationIoU(K).update(pred, target)
    with pytest.raises(ValueError, match=match):
        segmentation_iou(pred, target, K)


def test_bad_args() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationIoU(0)
    with pytest.raises(ValueError, match="ignore_index"):
        SegmentationIoU(3, ignore_index=2.5)  # type: ignore[arg-type]


def test_docstring_example() -> None:
    result = doctest.testmod(metrics_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# --- DDP: two gloo processes give the scores of one process over all the data -----------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, shards: list, queue) -> None:
    # A forked child must not enter the OpenMP pool the parent already used (libgomp is not
    # fork-safe: it hangs); with one thread torch never opens a parallel region.
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        metric, per_class = SegmentationIoU(K), SegmentationIoU(K, per_class=True)
        for pred, target in shards[rank]:
            metric.update(pred, target)
            per_class.update(pred, target)
        # compute() syncs the confusion matrix (sum) across ranks
        queue.put((rank, metric.compute().item(), per_class.compute().tolist()))
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_equal_one_process() -> None:
    pred, target = _random_maps(11, n=5, void_pred=True)
    # uneven shards: rank 0 gets 3 images in two updates, rank 1 gets 2
    shards = [[(pred[:2], target[:2]), (pred[2], target[2])], [(pred[3:], target[3:])]]
    single_miou = segmentation_iou(pred, target, K).item()
    single_iou = segmentation_iou(pred, target, K, per_class=True)
    # fork is ~50x faster to start than spawn (no torchmetrics re-import); see _ddp_worker
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_ddp_worker, args=(r, port, shards, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    for _, miou, per_class in results:
        assert miou == pytest.approx(single_miou, rel=1e-6)
        np.testing.assert_allclose(per_class, single_iou.numpy(), rtol=1e-6)
    # and the shards alone differ from the whole (the sync did something)
    alone = segmentation_iou(pred[3:], target[3:], K).item()
    assert alone != pytest.approx(single_miou, rel=1e-6)
