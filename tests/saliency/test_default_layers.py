"""Default layers follow the model (issue 19): VGG names, ResNet stages, a probe, or an error."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v2, resnet18

from dcsm_lightning.models.backbones import create_backbone
from dcsm_lightning.saliency import (
    BLOCKS_3_TO_5,
    DCSM,
    GradCAM,
    LayerGradient,
    NoDefaultLayers,
    candidate_blocks,
    default_layers,
)


class ScoreMapResNet(nn.Module):
    """A user's score-map classifier: a ResNet-18 trunk as a plain Sequential + 1 x 1 head."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.trunk = nn.Sequential(*list(resnet18(weights=None).children())[:-2])
        self.head = nn.Conv2d(512, num_classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(image))


def test_our_vgg_backbones_keep_the_papers_layers():
    choice = default_layers(create_backbone("vgg_small", 3), "blocks")
    assert (choice.paths, choice.at, choice.rule) == (BLOCKS_3_TO_5, "input", "vgg")
    assert default_layers(create_backbone("vgg_small", 3), "last").paths == ("relu5_3",)


def test_torchvision_resnet_gives_its_stage_outputs():
    class Wrapped(nn.Module):  # a LightningModule-like wrapper around a torchvision ResNet
        def __init__(self) -> None:
            super().__init__()
            self.net = resnet18(weights=None, num_classes=3)

    choice = default_layers(Wrapped(), "blocks")
    assert choice.paths == ("net.layer2", "net.layer3", "net.layer4") and choice.at == "output"
    assert default_layers(Wrapped(), "last").paths == ("net.layer4",)


def test_probe_finds_the_last_blocks_at_strides_8_16_32():
    # A ResNet trunk as a Sequential has no ResNet class: the probe finds its stages.
    blocks = candidate_blocks(ScoreMapResNet())
    assert {(b.path, b.stride) for b in blocks} >= {("trunk.5", 8), ("trunk.7", 32)}
    assert "trunk" not in {b.path for b in blocks}  # spans strides 2-32: a backbone
    assert "head" not in {b.path for b in blocks}  # the score map itself
    choice = default_layers(ScoreMapResNet(), "blocks")
    assert (choice.paths, choice.rule) == (("trunk.5", "trunk.6", "trunk.7"), "probe")
    # Another torchvision family: MobileNetV2's last blocks at strides 8, 16 and 32.
    assert default_layers(mobilenet_v2(weights=None), "blocks").paths == (
        "features.6",
        "features.13",
        "features.18",
    )


def test_explicit_layers_win_and_unknown_model_fails_at_setup_with_candidates():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))
    with pytest.raises(NoDefaultLayers, match=r"conv3_1.*ResNet.*stride 8.*: 1 \(stride 1\)"):
        DCSM().setup(net)
    with pytest.raises(NoDefaultLayers, match="layer=") as err:
        GradCAM().setup(net)
    assert "\n" not in str(err.value)
    LayerGradient(layers=["0"]).setup(net)  # explicit layers: no rule needed
    with pytest.raises(ValueError, match="'conv9' not found"):
        LayerGradient(layers=["conv9"]).setup(net)  # and a bad name fails at setup


def test_default_layers_leave_the_model_as_it_was():
    model = ScoreMapResNet().train()
    flags = [m.training for m in model.modules()]
    default_layers(model)
    assert [m.training for m in model.modules()] == flags
    assert all(p.requires_grad for p in model.parameters())
    assert not model.trunk[0]._forward_hooks


def test_the_callback_fails_at_setup_before_the_first_batch():
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, Dataset

    from dcsm_lightning import SaliencySegmentation

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.net(image)

        def validation_step(self, batch: dict, batch_idx: int) -> None:
            pass

    class NeverRead(Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> dict:
            raise AssertionError("a batch was read before the error")

    seg = SaliencySegmentation(["dcsm"], num_classes=3)
    trainer = pl.Trainer(callbacks=[seg], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")  # fmt: skip
    with pytest.raises(NoDefaultLayers, match="Pass layers="):
        trainer.validate(Tiny(), DataLoader(NeverRead()))
