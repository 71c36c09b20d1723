"""WarmupCosineLR: the curve against a hand computation, its length from the trainer, per-batch
stepping in MultiLabelFCN and SegmentationNet, and resuming into a longer run."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader

from dcsm_lightning.models import MultiLabelFCN, SegmentationNet, WarmupCosineLR
from dcsm_lightning.models.schedules import planned_steps


def _optimizer(*lrs: float) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.AdamW(groups)


def _curve(scheduler: WarmupCosineLR, steps: int) -> list[list[float]]:
    """The learning rates of every group at steps 0 .. steps - 1."""
    out = []
    for _ in range(steps):
        out.append([group["lr"] for group in scheduler.optimizer.param_groups])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def _by_hand(step: int, total: int, warmup: float, peak: float, start: float, end: float):
    """Cosine from start * peak to the peak over the first warmup * total steps, then a cosine
    down to end * peak at step total - 1 (OneCycleLR's phases)."""
    top = warmup * total - 1
    if step <= top:
        low, high, pct = start * peak, peak, step / top
    else:
        low, high, pct = peak, end * peak, (step - top) / (total - 1 - top)
    return high + (low - high) * (1 + math.cos(math.pi * pct)) / 2


def test_curve_is_a_warm_up_then_a_cosine_to_end_factor_of_each_groups_peak():
    total = 50
    scheduler = WarmupCosineLR(_optimizer(1e-3, 4e-2), total_steps=total, warmup=0.1)
    curve = _curve(scheduler, total)
    for step, lrs in enumerate(curve):
        for lr, peak in zip(lrs, (1e-3, 4e-2), strict=True):
            assert lr == pytest.approx(_by_hand(step, total, 0.1, peak, 0.04, 0.02), rel=1e-6)
    assert curve[0][0] == pytest.approx(0.04e-3) and curve[-1][1] == pytest.approx(0.02 * 4e-2)
    assert max(range(total), key=lambda s: curve[s][0]) == 4  # the peak ends the warm-up


def test_length_comes_from_planned_steps_and_is_required():
    with planned_steps(lambda: 20):
        assert WarmupCosineLR(_optimizer(1e-3)).total_steps == 20
        assert WarmupCosineLR(_optimizer(1e-3), total_steps=7).total_steps == 7
    with pytest.raises(ValueError, match="needs total_steps"):
        WarmupCosineLR(_optimizer(1e-3))
    with planned_steps(lambda: float("inf")), pytest.raises(ValueError, match="max_epochs"):
        WarmupCosineLR(_optimizer(1e-3))


@pytest.mark.parametrize(
    "kwargs", [{"warmup": 1.0}, {"warmup": -0.1}, {"start_factor": 0}, {"end_factor": 1.5}]
)
def test_bad_fractions_are_refused(kwargs):
    field = next(iter(kwargs))
    with pytest.raises(ValueError, match=field):
        WarmupCosineLR(_optimizer(1e-3), total_steps=10, **kwargs)


def test_a_resumed_run_keeps_its_own_length_and_the_checkpoints_position():
    first = WarmupCosineLR(_optimizer(1e-3), total_steps=4)
    _curve(first, 3)
    longer = WarmupCosineLR(_optimizer(1e-3), total_steps=8)
    longer.load_state_dict(first.state_dict())
    assert longer.total_steps == 8 and longer.last_epoch == 3
    _curve(longer, 5)  # stepping to the new end raises no "Tried to step" error


class _RecordLR(Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def _batches(n: int, with_masks: bool) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        batch = {
            "image": torch.randn(2, 3, 32, 32, generator=g),
            "labels": torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
            "id": [f"a{i}", f"b{i}"],
        }
        if with_masks:
            batch["mask"] = torch.randint(0, 4, (2, 32, 32), generator=g)
        out.append(batch)
    return out


@pytest.mark.parametrize("module", [MultiLabelFCN, SegmentationNet])
def test_modules_step_it_per_batch_over_the_trainers_steps(module, tmp_path):
    torch.manual_seed(0)
    model = module(
        num_classes=3,
        backbone="vgg_small",
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
        lr_scheduler=lambda opt: WarmupCosineLR(opt, warmup=0.25),
        scale_range=(1.0, 1.0),
        **({"dilation": 2} if module is SegmentationNet else {}),
    )
    record = _RecordLR()
    trainer = Trainer(
        max_epochs=2,
        callbacks=[record],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    batches = _batches(4, with_masks=module is SegmentationNet)
    trainer.fit(model, DataLoader(batches, batch_size=None))
    config = trainer.lr_scheduler_configs[0]
    assert config.interval == "step" and config.scheduler.total_steps == 8
    expected = _curve(WarmupCosineLR(_optimizer(1e-3), total_steps=8, warmup=0.25), 8)
    assert record.lrs == pytest.approx([lrs[0] for lrs in expected], rel=1e-6)
