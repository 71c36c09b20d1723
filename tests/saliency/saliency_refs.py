"""Tiny seeded models and Captum reference helpers for the saliency tests (not a test module)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from dcsm_lightning.saliency import max_abs_over_channels, upsample_maps

K = 4


def tiny_fcn(
    num_classes: int = K, seed: int = 0, batch_norm: bool = False, dropout: bool = False
) -> nn.Module:
    """A VGG-like FCN with the paper's layer names; 24 x 24 input -> 3 x 3 score map."""
    torch.manual_seed(seed)
    widths = {"1_1": (3, 4), "2_1": (4, 6), "3_1": (6, 8), "3_2": (8, 8), "4_1": (8, 8)}
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for name, (cin, cout) in widths.items():
        layers[f"conv{name}"] = nn.Conv2d(cin, cout, 3, padding=1)
        if batch_norm:
            layers[f"bn{name}"] = nn.BatchNorm2d(cout)
        layers[f"relu{name}"] = nn.ReLU(inplace=False)
        if name in ("1_1", "2_1", "3_2"):
            layers[f"pool{name[0]}"] = nn.MaxPool2d(2)
    head: OrderedDict[str, nn.Module] = OrderedDict()
    if dropout:
        head["drop"] = nn.Dropout2d(0.5)
    head["score"] = nn.Conv2d(8, num_classes, 1)
    return nn.Sequential(OrderedDict(features=nn.Sequential(layers), head=nn.Sequential(head)))


class Pooled(nn.Module):
    """Wrap a score-map model as B x K scores (sum or max over positions) for Captum."""

    def __init__(self, model: nn.Module, seed: str = "sum") -> None:
        super().__init__()
        self.model = model
        self.seed = seed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if out.ndim == 2:
            return out
        return out.sum((2, 3)) if self.seed == "sum" else out.amax((2, 3))


def captum_layer_maps(model, image, layer, c, at="input", size=None, seed="sum"):
    """Eq. 3 maps B x H x W of class c from Captum's LayerGradientXActivation (no multiply).

    ``layer`` may be a list of modules (one map per layer is returned, as a list) and ``c``
    a list of per-image classes.
    """
    from captum.attr import LayerGradientXActivation

    attr = LayerGradientXActivation(Pooled(model, seed), layer, multiply_by_inputs=False)
    grads = attr.attribute(image, target=c, attribute_to_layer_input=at == "input")
    size = size or tuple(image.shape[-2:])
    if isinstance(layer, list):
        return [upsample_maps(max_abs_over_channels(g), size) for g in grads]
    grads = grads[0] if isinstance(grads, tuple) else grads
    return upsample_maps(max_abs_over_channels(grads), size)


def model_snapshot(model: nn.Module) -> dict:
    """Everything saliency must leave as it was."""
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad is None for p in model.parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = model_snapshot(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert all(after["grads"]), "a parameter got a .grad"
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
        assert not m._backward_hooks and not m._backward_pre_hooks


def toy_scenes(num: int, seed: int, size: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Images B x 3 x size x size with 1-2 of K coloured, striped 8 x 8 patches; tags B x K."""
    gen = torch.Generator().manual_seed(seed)
    colours = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1]])
    images = 0.3 * torch.randn(num, 3, size, size, generator=gen)
    labels = torch.zeros(num, K)
    stripes = (torch.arange(8) % 2 * 2 - 1).float()
    for i in range(num):
        for c in torch.randperm(K, generator=gen)[: 1 + i % 2].tolist():
            y, x = torch.randint(0, size - 8, (2,), generator=gen).tolist()
            texture = stripes[:, None] if c % 2 else stripes[None, :]
            images[i, :, y : y + 8, x : x + 8] = 2 * colours[c, :, None, None] * (1 + texture) / 2
            labels[i, c] = 1
    return images, labels


def trained_tiny_fcn(steps: int = 200) -> nn.Module:
    """``tiny_fcn`` trained briefly (Adam, global max pooling) on :func:`toy_scenes`."""
    model = tiny_fcn(seed=0)
    images, labels = toy_scenes(64, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        batch = slice(16 * (step % 4), 16 * (step % 4 + 1))
        logits = model(images[batch]).amax((2, 3))
        loss = nn.functional.binary_cross_entropy_with_logits(logits, labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()
