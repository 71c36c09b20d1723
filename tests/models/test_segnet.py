"""SegmentationNet: loss, heads, weight loading, step outputs and the CRF / metric plumbing."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from dcsm_lightning.crf import CRFSettings, DenseCRF
from dcsm_lightning.models import (
    MultiLabelFCN,
    SegmentationNet,
    WarmupCosineLR,
    create_segmenter,
    load_segmenter_weights,
    segmentation_loss,
)
from dcsm_lightning.models.segheads import backbone_parameters
from dcsm_lightning.segmentation.labels import labels_from_maps
from dcsm_lightning.segmentation.network import NetworkSegmentation


def test_loss_is_cross_entropy_over_the_non_void_pixels_only():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, 3, generator=g)
    mask = torch.randint(0, 4, (2, 3, 3), generator=g)
    mask[0, 0] = 255
    mask[1, :, 2] = 255
    # by hand: mean over kept pixels of -log softmax(logits)[label]
    log_probs = logits.log_softmax(1)
    kept = [
        -log_probs[b, mask[b, i, j], i, j]
        for b in range(2)
        for i in range(3)
        for j in range(3)
        if mask[b, i, j] != 255
    ]
    assert segmentation_loss(logits, mask).item() == pytest.approx(
        float(sum(kept) / len(kept)), rel=1e-6
    )
    changed = logits.clone()
    changed[0, :, 0] = 100 * torch.randn(4, 3, generator=g)  # only void pixels change
    assert segmentation_loss(changed, mask).item() == pytest.approx(
        segmentation_loss(logits, mask).item(), rel=1e-6
    )


def test_loss_of_an_all_void_batch_is_zero_with_a_gradient():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((1, 2, 2), 255))
    loss.backward()
    assert loss.item() == 0.0 and not math.isnan(loss.item())
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("backbone", ["vgg_small", "vgg16"])
def test_largefov_has_output_stride_8_and_upsamples_to_the_input(backbone):
    net = create_segmenter("largefov", 7, backbone, dilation=2).eval()
    image = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        assert net(image).shape == (1, 7, 40, 56)
        scores = net.score(net.head(net.features(image)))
    assert scores.shape[-2:] == (5, 7)
    assert net.head.fc6.dilation == (2, 2) and net.features.conv5_1.dilation == (2, 2)


@pytest.mark.parametrize("head", ["deeplabv3_resnet50", "fcn_resnet50"])
def test_torchvision_heads_give_full_size_logits(head):
    net = create_segmenter(head, 3).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 48, 40)).shape == (1, 3, 48, 40)


def test_unknown_head_or_a_backbone_it_cannot_use_is_refused():
    with pytest.raises(ValueError, match="Unknown head 'unet'.*largefov"):
        create_segmenter("unet", 3)
    with pytest.raises(ValueError, match="ResNet-50 backbone"):
        create_segmenter("fcn_resnet50", 3, backbone="vgg16")


def test_a_classifier_checkpoint_initialises_largefov(tmp_path):
    torch.manual_seed(0)
    classifier = MultiLabelFCN(num_classes=6, backbone="vgg_small")
    path = tmp_path / "classifier.ckpt"
    torch.save({"state_dict": classifier.state_dict()}, path)
    net = create_segmenter("largefov", 7, "vgg_small", dilation=2)
    left = load_segmenter_weights(net, str(path))
    ours, theirs = net.state_dict(), classifier.backbone.state_dict()
    for key in ("features.conv1_1.weight", "features.conv5_3.weight", "features.bn5_3.running_mean",
                "head.fc6.weight", "head.fc7.bias"):  # fmt: skip
        assert torch.equal(ours[key], theirs[key]), key
    assert left == ["score.weight", "score.bias"]  # K + 1 outputs: stays random


def test_imagenet_resnet50_initialises_the_torchvision_backbone(tmp_path):
    torch.manual_seed(0)
    state = torchvision.models.resnet50(weights=None).state_dict()
    path = tmp_path / "resnet50-0676ba61.pth"
    torch.save(state, path)
    net = create_segmenter("deeplabv3_resnet50", 3)
    left = load_segmenter_weights(net, str(path))
    assert torch.equal(net.model.backbone.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])
    assert all(k.startswith("model.classifier.") for k in left)


def test_weights_that_fit_nothing_and_a_missing_file_are_clear_errors(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, path)
    net = create_segmenter("largefov", 3, "vgg_small")
    with pytest.raises(ValueError, match="other.pth.*do not fit"):
        load_segmenter_weights(net, str(path))
    with pytest.raises(FileNotFoundError, match="(?s)missing.pth does not exist.*allow_download"):
        load_segmenter_weights(net, str(tmp_path / "missing.pth"))


def _batch(size=32, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    valid = torch.ones(2, size, size, dtype=torch.bool)
    valid[1, :, 24:] = False  # letterbox padding
    mask = torch.randint(0, k + 1, (2, size, size), generator=g).masked_fill(~valid, 255)
    return {
        "image": torch.randn(2, 3, size, size, generator=g),
        "rgb": torch.randint(0, 256, (2, size, size, 3), generator=g, dtype=torch.uint8),
        "labels": torch.ones(2, k),
        "mask": mask,
        "valid": valid,
        "id": ["a", "b"],
    }


def test_step_outputs_follow_the_contract_and_eq7_reproduces_the_argmax():
    torch.manual_seed(0)
    model = SegmentationNet(
        num_classes=3, backbone="vgg_small", dilation=2, segmentation=NetworkSegmentation()
    ).eval()
    batch = _batch()
    with torch.no_grad():
        logits = model(batch["image"])
    out = model.segmentation.segment(model, model.segmentation.batch_adapter(batch))
    labels = out.masks["segnet"]
    assert torch.equal(labels[batch["valid"]], logits.argmax(1)[batch["valid"]])
    assert (labels[~batch["valid"]] == 255).all()
    maps, candidates = out.maps["segnet"], out.candidates
    assert maps.shape == (2, 3, 32, 32) and 0 <= maps.min() and maps.max() <= 1
    for b in range(2):
        won = set(labels[b][labels[b] != 255].unique().tolist()) - {0}
        assert set((candidates[b].nonzero().flatten() + 1).tolist()) == won
    assert torch.equal(labels_from_maps(maps, candidates, batch["valid"]), labels)
    probs = logits.softmax(1)[:, 1:]
    assert torch.allclose(out.probs[0], probs[0].flatten(1).amax(1))


def test_validate_logs_segnet_and_segnet_crf_miou():
    torch.manual_seed(0)
    model = SegmentationNet(
        num_classes=3, class_names=["a", "b", "c"], backbone="vgg_small", dilation=2,
        segmentation=NetworkSegmentation(log_panels=False),
    )  # fmt: skip
    trainer = Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[DenseCRF(CRFSettings(iterations=2), num_workers=0)],
    )  # fmt: skip
    (metrics,) = trainer.validate(model, DataLoader([_batch()], batch_size=None), verbose=False)
    assert {"val/miou/segnet", "val/miou/segnet+crf", "val/iou/segnet/background"} <= set(metrics)
    assert 0 <= metrics["val/miou/segnet+crf"] <= 1


@pytest.mark.parametrize("head", ["largefov", "fcn_resnet50"])
def test_backbone_lr_factor_scales_the_backbone_group_only(head):
    backbone = "vgg_small" if head == "largefov" else None
    model = SegmentationNet(
        num_classes=3, head=head, backbone=backbone, dilation=2, backbone_lr_factor=0.1,
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-2),
        lr_scheduler=lambda o: WarmupCosineLR(o, total_steps=10, warmup=0.2),
    )  # fmt: skip
    config = model.configure_optimizers()
    groups = config["optimizer"].param_groups
    expected = {id(p) for p in backbone_parameters(model.net)}
    assert {id(p) for p in groups[0]["params"]} == expected
    assert not expected & {id(p) for p in groups[1]["params"]}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))
    # the scheduler is built after the scaling: each group's peak and warm-up follow its lr
    assert [g["max_lr"] for g in groups] == pytest.approx([1e-3, 1e-2])
    assert [g["lr"] for g in groups] == pytest.approx([0.04e-3, 0.04e-2])  # start_factor


def test_a_zero_backbone_lr_factor_leaves_the_backbone_as_it_was():
    torch.manual_seed(0)
    model = SegmentationNet(
        num_classes=3, backbone="vgg_small", dilation=2, backbone_lr_factor=0.0,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
    )  # fmt: skip
    optimizer = model.configure_optimizers()
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    batch = _batch()
    segmentation_loss(model(batch["image"]), batch["mask"]).backward()
    optimizer.step()
    after = model.net.state_dict()
    assert torch.equal(after["features.conv1_1.weight"], before["features.conv1_1.weight"])
    assert torch.equal(after["features.conv5_3.weight"], before["features.conv5_3.weight"])
    assert not torch.equal(after["score.weight"], before["score.weight"])
    assert not torch.equal(after["head.fc6.weight"], before["head.fc6.weight"])
    with pytest.raises(ValueError, match="backbone_lr_factor must be >= 0"):
        SegmentationNet(num_classes=3, backbone="vgg_small", backbone_lr_factor=-1.0)
