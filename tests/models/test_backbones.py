from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from dcsm_lightning.models import create_backbone, list_backbones, register_backbone
from dcsm_lightning.models.backbones import VGGFCN, VGGSpec, torchvision_vgg16_key_map
from dcsm_lightning.models.segheads import LargeFOV

PAPER_CONVS = [
    f"conv{b}_{j}"
    for b, n in zip(range(1, 6), (2, 2, 3, 3, 3), strict=True)
    for j in range(1, n + 1)
]


def test_registry_lists_both_backbones():
    assert {"vgg16", "vgg_small"} <= set(list_backbones())


def test_unknown_backbone_lists_known_names():
    with pytest.raises(ValueError, match="vgg_small"):
        create_backbone("resnet9000", 3)


def test_bad_spec_and_class_count_are_clear_errors():
    spec = VGGSpec((8, 8, 8), 16, 1, 0, batch_norm=True, dropout=0.0)
    with pytest.raises(ValueError, match="one width per VGG block"):
        VGGFCN(3, spec)
    with pytest.raises(ValueError, match="num_classes"):
        VGGFCN(0, VGGSpec((8,) * 5, 16, 1, 0, batch_norm=True, dropout=0.0))


def test_registering_twice_warns():
    register_backbone("_tmp_twice")(lambda k: nn.Conv2d(3, k, 1))
    with pytest.warns(UserWarning, match="registered twice"):
        register_backbone("_tmp_twice")(lambda k: nn.Conv2d(3, k, 1))


@pytest.mark.parametrize("name", ["vgg16", "vgg_small"])
def test_paper_layer_names_and_non_inplace_relus(name):
    model = create_backbone(name, 4)
    modules = dict(model.named_modules())
    for conv in PAPER_CONVS:
        assert isinstance(modules[f"features.{conv}"], nn.Conv2d)
        relu = modules[f"features.{conv.replace('conv', 'relu')}"]
        assert isinstance(relu, nn.ReLU) and not relu.inplace
    assert isinstance(modules["head.fc6"], nn.Conv2d) and isinstance(modules["head.fc7"], nn.Conv2d)
    assert all(not m.inplace for m in model.modules() if isinstance(m, nn.ReLU))


def test_vgg16_score_map_size_at_500():
    torch.manual_seed(0)
    model = create_backbone("vgg16", 20).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 500, 500))
    # 500 -> pool5 15 x 15 (floor halvings), fc6 is an unpadded 7 x 7 conv -> 9 x 9
    assert out.shape == (1, 20, 9, 9)


def test_vgg_small_keeps_a_score_map_at_demo_size():
    model = create_backbone("vgg_small", 6).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 96, 96)).shape == (2, 6, 3, 3)


def test_batch_norm_specs_normalise_fc6_and_fc7_and_vgg16_keeps_its_keys():
    small = dict(create_backbone("vgg_small", 3).head.named_children())
    assert list(small) == ["fc6", "bn6", "relu6", "drop6", "fc7", "bn7", "relu7", "drop7"]
    assert isinstance(small["bn6"], nn.BatchNorm2d) and isinstance(small["bn7"], nn.BatchNorm2d)
    vgg16_head = {k for k in create_backbone("vgg16", 3).state_dict() if k.startswith("head.")}
    assert vgg16_head == {f"head.fc{n}.{p}" for n in (6, 7) for p in ("weight", "bias")}


@pytest.mark.parametrize(
    "build",
    [lambda: create_backbone("vgg_small", 4), lambda: LargeFOV(4, "vgg_small", dilation=2)],
    ids=["vgg_small", "largefov"],
)
def test_a_checkpoint_without_head_batch_norm_loads_and_predicts_as_before(build):
    torch.manual_seed(0)
    trained = build().eval()
    for module in trained.modules():  # non-trivial statistics in the conv blocks
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    trained.score.weight.data.mul_(20)
    old = copy.deepcopy(trained)  # the head as it was: fc6 -> ReLU -> fc7 -> ReLU
    old.head.bn6, old.head.bn7 = nn.Identity(), nn.Identity()
    image = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = old(image)
    fresh = build()
    with pytest.warns(UserWarning, match="predates BatchNorm"):
        fresh.load_state_dict(old.state_dict())
    with torch.no_grad():
        got = fresh.eval()(image)
    assert expected.std() > 0.1  # the maps vary: a comparison of near-constants proves little
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_torchvision_key_map_covers_every_vgg16_layer_but_the_imagenet_classifier():
    tv_keys = set(torchvision.models.vgg16(weights=None).state_dict())
    mapping = torchvision_vgg16_key_map()
    assert set(mapping) == tv_keys - {"classifier.6.weight", "classifier.6.bias"}
    ours = set(VGGFCN(3, create_backbone("vgg16", 3).spec).state_dict())
    assert set(mapping.values()) == ours - {"score.weight", "score.bias"}
