from __future__ import annotations

import pytest
import torch
import torchvision

from dcsm_lightning.models import MultiLabelFCN, create_backbone
from dcsm_lightning.models.pretrained import hub_cache_file, load_pretrained


@pytest.fixture(scope="module")
def torchvision_vgg16_file(tmp_path_factory):
    torch.manual_seed(0)
    state = torchvision.models.vgg16(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "vgg16-397923af.pth"
    torch.save(state, path)
    return path, state


def test_torchvision_vgg16_weights_load_through_pretrained(torchvision_vgg16_file):
    path, state = torchvision_vgg16_file
    model = MultiLabelFCN(num_classes=20, backbone="vgg16", pretrained=str(path))
    features = model.backbone.features
    assert torch.equal(features.conv1_1.weight, state["features.0.weight"])
    assert torch.equal(features.conv3_3.bias, state["features.14.bias"])
    assert torch.equal(features.conv5_3.weight, state["features.28.weight"])
    fc6 = model.backbone.head.fc6.weight
    assert torch.equal(fc6.reshape(4096, -1), state["classifier.0.weight"])
    assert torch.equal(
        model.backbone.head.fc7.weight.reshape(4096, 4096), state["classifier.3.weight"]
    )
    # the fc6 conv over pool5 equals torchvision's linear layer over the flattened 7 x 7 pool5
    pool5 = torch.randn(1, 512, 7, 7)
    conv = torch.nn.functional.conv2d(pool5, fc6, model.backbone.head.fc6.bias).flatten()
    linear = torch.nn.functional.linear(
        pool5.flatten(1), state["classifier.0.weight"], state["classifier.0.bias"]
    )
    torch.testing.assert_close(conv, linear.flatten(), rtol=1e-4, atol=1e-4)


def test_hub_cache_is_read_without_download(torchvision_vgg16_file, tmp_path, monkeypatch):
    path, state = torchvision_vgg16_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = hub_cache_file()
    cached.parent.mkdir(parents=True)
    cached.symlink_to(path)
    model = create_backbone("vgg16", 5)
    load_pretrained(model, "hub-cache")
    assert torch.equal(model.features.conv2_1.weight, state["features.5.weight"])


def test_missing_hub_cache_says_how_to_supply_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        load_pretrained(create_backbone("vgg_small", 3), "hub-cache")
    message = str(info.value)
    assert str(hub_cache_file()) in message and "allow_download" in message
    assert "vgg16-397923af.pth" in message


def test_missing_weights_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        MultiLabelFCN(num_classes=3, backbone="vgg_small", pretrained=str(tmp_path / "nope.pth"))


def test_corrupt_weights_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth"):
        load_pretrained(create_backbone("vgg_small", 3), str(bad))


def test_own_checkpoint_loads_and_keeps_score_layer_of_other_size(tmp_path):
    torch.manual_seed(0)
    source = create_backbone("vgg_small", 4)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "small.ckpt")
    target = create_backbone("vgg_small", 7)
    load_pretrained(target, str(tmp_path / "small.ckpt"))
    assert torch.equal(target.features.conv4_2.weight, source.features.conv4_2.weight)
    assert target.score.weight.shape[0] == 7


def test_lightning_checkpoint_of_multilabelfcn_loads_into_a_backbone(tmp_path):
    torch.manual_seed(1)
    module = MultiLabelFCN(num_classes=3, backbone="vgg_small")
    torch.save({"state_dict": module.backbone.state_dict(prefix="backbone.")}, tmp_path / "m.ckpt")
    target = create_backbone("vgg_small", 3)
    load_pretrained(target, str(tmp_path / "m.ckpt"))
    assert torch.equal(target.score.weight, module.backbone.score.weight)
