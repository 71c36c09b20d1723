"""The strategies on this project's own backbones, and the docstring examples."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

from dcsm_lightning.models import MultiLabelFCN, create_backbone
from dcsm_lightning.saliency import DCSM, LayerGradient, Simonyan, resolve_layer


def test_paper_defaults_on_vgg_small_inside_the_lightning_module():
    torch.manual_seed(0)
    module = MultiLabelFCN(num_classes=5, backbone="vgg_small")
    assert resolve_layer(module, "conv3_1")[0] == "backbone.features.conv3_1"
    image = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    candidates = torch.tensor(
        [[True, True, False, True, False], [False, False, True, False, False]]
    )
    with torch.inference_mode():  # as in Lightning's validation loop
        maps = DCSM()(module, image.clone(), candidates)
    assert maps.shape == (2, 5, 48, 48) and maps[candidates].amax((1, 2)).gt(0).all()
    assert module.training and all(p.requires_grad for p in module.parameters())


def test_vgg16_layer_names_and_at_input_reads_the_previous_layer():
    backbone = create_backbone("vgg16", num_classes=3)
    assert [resolve_layer(backbone, f"conv{b}_1")[0] for b in (3, 4, 5)] == [
        "features.conv3_1",
        "features.conv4_1",
        "features.conv5_1",
    ]


def test_simonyan_and_layer_gradient_on_vgg_small():
    torch.manual_seed(0)
    backbone = create_backbone("vgg_small", num_classes=4).eval()
    image = torch.randn(1, 3, 32, 32)
    for strategy in (Simonyan(), LayerGradient(backprop="guided")):
        maps = strategy(backbone, image)  # candidates selected at scale 1.0
        assert maps.shape == (1, 4, 32, 32) and int(maps.amax((2, 3)).gt(0).sum()) >= 3


@pytest.mark.parametrize(
    "module", ["candidates", "dcsm", "guided", "registry", "captum_attribution", "distinct"]
)
def test_docstring_examples(module):
    mod = importlib.import_module(f"dcsm_lightning.saliency.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
