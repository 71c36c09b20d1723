"""Saliency on models that are not ours: a torchvision ResNet-18 classifier (B x K head)."""

from __future__ import annotations

import pytest
import torch
from saliency_refs import assert_unchanged, captum_layer_maps, model_snapshot
from torchvision.models import resnet18

from dcsm_lightning.saliency import CAM, DCSM, CandidateSlots, GradCAM, LayerGradient, Simonyan

LAYERS = ["layer2", "layer3", "layer4"]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return resnet18(weights=None, num_classes=5).eval()


@pytest.fixture(scope="module")
def batch():
    image = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    candidates = torch.tensor(
        [[True, False, False, True, True], [False, True, False, False, False]]
    )
    return image, candidates


@pytest.mark.parametrize("at", ["input", "output"])
def test_layer_gradient_on_resnet_equals_captum(resnet, batch, at):
    image, candidates = batch
    raw = LayerGradient(layers=LAYERS, at=at).layer_maps(resnet, image, candidates)
    slots = CandidateSlots.from_mask(candidates)
    modules = [getattr(resnet, name) for name in LAYERS]
    for j in range(slots.num_slots):  # one Captum call per slot, per-image targets
        targets = slots.classes[:, j].tolist()
        expected = captum_layer_maps(resnet, image, modules, targets, at)
        for name, ref in zip(LAYERS, expected, strict=True):
            for b, c in enumerate(targets):
                if slots.valid[b, j]:
                    assert torch.allclose(raw[name][b, c], ref[b], atol=1e-6), (name, b, c)


def test_dcsm_guided_on_resnet_with_inplace_relus(resnet, batch):
    image, candidates = batch
    resnet.train()
    before = model_snapshot(resnet)
    maps = DCSM(layers=LAYERS)(resnet, image, candidates)
    assert_unchanged(resnet, before)
    resnet.eval()
    assert maps.shape == (2, 5, 64, 64)
    assert maps[candidates].amax((1, 2)).gt(0).all() and maps.le(1).all()
    assert torch.equal(maps[~candidates], torch.zeros_like(maps[~candidates]))
    # Image 1 has a single candidate: no subtraction, so DCSM equals the layer-gradient mean.
    alone = LayerGradient(layers=LAYERS, backprop="guided", scales=(0.8, 1.0, 1.2))
    assert torch.allclose(maps[1], alone(resnet, image, candidates)[1], atol=1e-6)


def test_other_strategies_on_resnet(resnet, batch):
    image, candidates = batch
    for strategy in (Simonyan(), GradCAM(layer="layer4"), CAM(classifier="fc", layer="layer4")):
        maps = strategy(resnet, image, candidates)
        assert maps.shape == (2, 5, 64, 64) and maps.min() >= 0 and maps.max() <= 1
        assert torch.equal(maps[~candidates], torch.zeros_like(maps[~candidates]))


def test_default_layers_on_resnet_are_its_stage_outputs(resnet, batch):
    # Issue 19: before, DCSM() looked for VGG-16's conv3_1 ... conv5_3 and failed on a ResNet
    # ("layer 'conv3_1' not found"); now it reads the outputs of layer2 ... layer4.
    image, candidates = batch
    given = DCSM(layers=LAYERS, at="output", scales=(1.0,))(resnet, image, candidates)
    assert torch.equal(DCSM(scales=(1.0,))(resnet, image, candidates), given)
    assert torch.equal(GradCAM()(resnet, *batch), GradCAM(layer="layer4")(resnet, *batch))
