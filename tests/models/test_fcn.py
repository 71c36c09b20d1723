from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from dcsm_lightning.models import (
    MultiLabelFCN,
    TwoStageFinetuning,
    global_max_pool,
    multilabel_loss,
)
from dcsm_lightning.models.augment import random_rescale


def _batches(n=4, k=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        labels = (torch.rand(2, k, generator=g) > 0.5).float()
        out.append(
            {
                "image": torch.randn(2, 3, size, size, generator=g),
                "labels": labels,
                "id": [f"a{i}", f"b{i}"],
            }
        )
    return out


def _loader(batches):
    return DataLoader(batches, batch_size=None)


def test_global_max_pool_takes_the_max_over_positions():
    score_map = torch.tensor([[[[1.0, 5.0], [2.0, -3.0]], [[-1.0, -2.0], [-0.5, -4.0]]]])
    assert torch.equal(global_max_pool(score_map), torch.tensor([[5.0, -0.5]]))


def test_loss_is_sigmoid_cross_entropy_summed_over_classes():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = -math.log(s(2.0)) - math.log(1 - s(-1.0)) - math.log(s(0.5))
    assert multilabel_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_forward_is_a_score_map_and_probs_are_its_pooled_sigmoid():
    torch.manual_seed(0)
    model = MultiLabelFCN(num_classes=3, backbone="vgg_small").eval()
    image = torch.randn(2, 3, 64, 64)
    score_map = model(image)
    assert score_map.shape == (2, 3, 2, 2)
    torch.testing.assert_close(
        model.predict_probs(image), torch.sigmoid(score_map.amax(dim=(2, 3)))
    )


def test_default_optimizer_is_the_paper_sgd():
    model = MultiLabelFCN(num_classes=3, backbone="vgg_small")
    opt = model.configure_optimizers()
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (1e-5, 0.9, 5e-4)


def test_random_rescale_stays_in_range_and_keeps_masks_aligned():
    torch.manual_seed(0)
    image = torch.zeros(1, 3, 100, 100)
    sides = {random_rescale(image, (0.7, 1.4))[0].shape[-1] for _ in range(50)}
    assert min(sides) >= 70 and max(sides) <= 140 and len(sides) > 10
    assert random_rescale(image, (1.0, 1.0))[0].shape[-1] == 100
    mask = torch.zeros(1, 100, 100, dtype=torch.long)
    mask[:, :50] = 255  # the top half void
    image[:, :, :50] = 1.0
    scaled, scaled_mask = random_rescale(image, (0.5, 0.5), mask)
    assert scaled_mask.shape == (1, 50, 50) and scaled_mask.dtype == torch.long
    assert torch.equal(scaled_mask == 255, scaled[:, 0] == 1.0)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"scale_range": (1.2, 0.8)}, "scale_range"),
        ({"class_names": ["a", "b"]}, "class_names"),
        ({"segmentation": "dcsm"}, "segmentation must be a SaliencySegmentation"),
    ],
)
def test_impossible_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MultiLabelFCN(num_classes=3, backbone="vgg_small", **kwargs)


def test_two_stage_finetuning_trains_the_head_first_then_everything(tmp_path):
    torch.manual_seed(0)
    model = MultiLabelFCN(
        num_classes=3,
        backbone="vgg_small",
        optimizer=lambda p: torch.optim.SGD(p, lr=0.01),
        scale_range=(1.0, 1.0),
    )
    conv_before = model.backbone.features.conv1_1.weight.detach().clone()
    fc6_before = model.backbone.head.fc6.weight.detach().clone()

    def fit(max_epochs: int) -> None:
        Trainer(
            max_epochs=max_epochs,
            callbacks=[TwoStageFinetuning(unfreeze_at_epoch=1)],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            default_root_dir=tmp_path,
        ).fit(model, _loader(_batches()))

    fit(max_epochs=1)
    assert torch.equal(model.backbone.features.conv1_1.weight, conv_before)
    assert not torch.equal(model.backbone.head.fc6.weight, fc6_before)
    fit(max_epochs=2)
    assert not torch.equal(model.backbone.features.conv1_1.weight, conv_before)


def test_finetuning_with_unknown_module_is_a_clear_error(tmp_path):
    model = MultiLabelFCN(num_classes=3, backbone="vgg_small")
    trainer = Trainer(
        max_epochs=1,
        callbacks=[TwoStageFinetuning(module_name="backbone.nope")],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    with pytest.raises(ValueError, match="backbone.nope"):
        trainer.fit(model, _loader(_batches()))


def test_training_reduces_the_loss_on_a_fixed_batch(tmp_path):
    torch.manual_seed(0)
    # 64 px: a 2 x 2 score map. At 32 px fc6 sees 1 x 1 maps of a 2-image batch, where the head's
    # BatchNorm statistics (2 values per channel) say little about eval mode.
    batches = _batches(n=1, size=64)
    model = MultiLabelFCN(
        num_classes=3,
        backbone="vgg_small",
        scale_range=(1.0, 1.0),
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
    )
    model.eval()
    with torch.no_grad():
        before = multilabel_loss(global_max_pool(model(batches[0]["image"])), batches[0]["labels"])
    model.train()
    trainer = Trainer(
        max_epochs=40,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, _loader(batches))
    model.eval()
    with torch.no_grad():
        after = multilabel_loss(global_max_pool(model(batches[0]["image"])), batches[0]["labels"])
    assert after < 0.5 * before
