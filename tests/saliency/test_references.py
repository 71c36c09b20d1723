"""Strategies against independent references (Captum) and against each other."""

from __future__ import annotations

import pytest
import torch
from captum.attr import GuidedBackprop, LayerGradCam, LayerGradientXActivation, Saliency
from saliency_refs import Pooled, captum_layer_maps
from torch import nn

from dcsm_lightning.saliency import (
    CAM,
    DCSM,
    CandidateSlots,
    GradCAM,
    LayerGradient,
    Simonyan,
    class_gradients,
    max_abs_over_channels,
    normalize_by_max,
    subtract_other_candidates,
    tanh_normalize,
    upsample_maps,
)

ATOL = 1e-6
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")


def _pairs(candidates):
    return [
        (b, c)
        for b in range(candidates.shape[0])
        for c in range(candidates.shape[1])
        if candidates[b, c]
    ]


@pytest.mark.parametrize("seed", ["sum", "max"])
def test_simonyan_equals_captum_saliency(model, image, candidates, seed):
    maps = Simonyan(seed=seed)(model, image, candidates)
    ref = Saliency(Pooled(model, seed))
    for b, c in _pairs(candidates):
        grad = ref.attribute(image, target=c, abs=True)[b : b + 1]
        expected = tanh_normalize(max_abs_over_channels(grad), 8.0)[0]
        assert torch.allclose(maps[b, c], expected, atol=ATOL)
    assert torch.equal(maps[~candidates], torch.zeros_like(maps[~candidates]))


@pytest.mark.parametrize("at", ["input", "output"])
def test_layer_gradient_equals_captum_layer_gradient(model, image, candidates, at):
    names = ["conv3_1", "conv3_2", "conv4_1"]
    strategy = LayerGradient(layers=names, at=at, backprop="bp")
    raw = strategy.layer_maps(model, image, candidates)
    for name in names:
        layer = model.features.get_submodule(name)
        for b, c in _pairs(candidates):
            expected = captum_layer_maps(model, image, layer, c, at)[b]
            assert torch.allclose(raw[name][b, c], expected, atol=ATOL), (name, b, c)
    maps = strategy(model, image, candidates)
    expected = torch.stack([tanh_normalize(raw[n], 3.0) for n in names]).mean(0)
    assert torch.allclose(maps, expected, atol=ATOL)


def test_guided_rule_equals_captum_guided_backprop_on_the_image(model, image, candidates):
    slots = CandidateSlots.from_mask(candidates)
    with torch.enable_grad():
        grads = class_gradients(model, image, slots, None, backprop="guided").grads[
            0
        ]  # N x B x 3 x H x W
    ref = GuidedBackprop(Pooled(model))
    assert grads.abs().sum() > 0
    for b in range(image.shape[0]):
        for j in range(slots.num_slots):
            if slots.valid[b, j]:
                c = int(slots.classes[b, j])
                expected = ref.attribute(image, target=c)[b]
                assert torch.allclose(grads[j, b], expected, atol=ATOL)


@pytest.mark.parametrize(("layer", "split"), [("conv3_1", 6), ("conv3_2", 8)])
def test_guided_layer_gradient_at_input_equals_captum_on_the_upper_part(
    model, image, candidates, layer, split
):
    # The derivative w.r.t. what conv3_1 reads (pool2's output) / conv3_2 reads (relu3_1's
    # output) is Captum's guided backprop of the upper part of the network w.r.t. its input.
    features = list(model.features.children())
    assert model.features[split] is model.features.get_submodule(layer)
    lower = nn.Sequential(*features[:split])
    upper = nn.Sequential(nn.Sequential(*features[split:]), model.head)
    raw = DCSM(layers=[layer], scales=(1.0,)).layer_maps(model, image, candidates)[layer]
    ref = GuidedBackprop(Pooled(upper))
    with torch.no_grad():
        mid = lower(image)
    for b, c in _pairs(candidates):
        expected = upsample_maps(max_abs_over_channels(ref.attribute(mid, target=c)[b]), (24, 24))
        assert torch.allclose(raw[b, c], expected, atol=ATOL)


@pytest.mark.parametrize("backprop", ["bp", "guided"])
def test_dcsm_without_subtraction_equals_layer_gradient(model, image, candidates, backprop):
    kwargs = {"layers": ["conv3_2"], "backprop": backprop, "scales": (1.0,)}
    dcsm = DCSM(subtract=False, **kwargs)(model, image, candidates)
    layer_gradient = LayerGradient(**kwargs)
    raw = layer_gradient.layer_maps(model, image, candidates)["conv3_2"]
    assert torch.allclose(dcsm, tanh_normalize(raw, 3.0), atol=ATOL)
    assert torch.allclose(dcsm, layer_gradient(model, image, candidates), atol=ATOL)


def test_dcsm_scales_average_the_per_scale_eq4_eq5_maps(model, image, candidates):
    strategy = DCSM(layers=["conv3_1", "conv4_1"], scales=(0.75, 1.25))
    maps = strategy(model, image, candidates)
    terms = []
    for scale in (0.75, 1.25):
        raw = strategy.layer_maps(model, image, candidates, scale=scale)
        for name in ("conv3_1", "conv4_1"):
            terms.append(tanh_normalize(subtract_other_candidates(raw[name], candidates), 3.0))
    assert torch.allclose(maps, torch.stack(terms).mean(0), atol=ATOL)


@pytest.mark.parametrize("backprop", ["bp", "guided"])
def test_batched_backward_equals_loop_and_per_image_calls(model, image, candidates, backprop):
    kwargs = {"layers": ["conv3_1", "conv4_1"], "backprop": backprop, "scales": (1.0, 0.8)}
    batched = DCSM(batched_backward=True, **kwargs)(model, image, candidates)
    looped = DCSM(batched_backward=False, **kwargs)(model, image, candidates)
    assert torch.allclose(batched, looped, atol=ATOL)
    for b in range(image.shape[0]):
        alone = DCSM(batched_backward=False, **kwargs)(
            model, image[b : b + 1], candidates[b : b + 1]
        )
        assert torch.allclose(looped[b], alone[0], atol=ATOL)


def test_batched_backward_default_is_per_device():
    auto = DCSM()
    assert not auto.use_batched_backward(torch.device("cpu"))  # one by one: faster on CPU
    assert auto.use_batched_backward(torch.device("cuda"))
    assert DCSM(batched_backward=True).use_batched_backward(torch.device("cpu"))
    assert not DCSM(batched_backward=False).use_batched_backward(torch.device("cuda"))


def _mostly_non_zero(maps, candidates):
    """Most candidates' maps have a positive value: a reference check on zeros proves nothing."""
    peaks = maps[candidates].amax((1, 2))
    assert peaks.gt(0).float().mean() >= 0.8, peaks


@pytest.mark.parametrize("layer", ["relu4_1", "relu3_2"])
def test_gradcam_equals_captum_layer_gradcam_on_a_trained_model(trained, layer):
    # Fails if the channel weights are the max of the gradient instead of its mean (relu3_2
    # sits below a pooling layer, so its gradient varies over positions) or without the ReLU.
    model, image, candidates = trained
    maps = GradCAM(layer=layer, scales=(1.0,))(model, image, candidates)
    ref = LayerGradCam(Pooled(model), model.features.get_submodule(layer))
    if layer == "relu4_1":
        _mostly_non_zero(maps, candidates)
    checked = 0
    for b, c in _pairs(candidates):
        cam = ref.attribute(image, target=c, relu_attributions=True)[b : b + 1]
        expected = normalize_by_max(upsample_maps(cam[:, 0], (24, 24)))[0]
        assert torch.allclose(maps[b, c], expected, atol=ATOL), (b, c)
        checked += int(expected.amax() > 0)
    assert checked >= 3


def test_cam_equals_a_hand_computation_on_a_trained_model(trained):
    # M^c = relu(sum_k W[c, k] A_k): A = what the 1 x 1 classifier reads (relu4_1's output).
    model, image, candidates = trained
    maps = CAM()(model, image, candidates)
    _mostly_non_zero(maps, candidates)
    with torch.no_grad():
        features = model.features(image)  # B x 8 x 3 x 3
    weight = model.head.score.weight[:, :, 0, 0]  # K x 8
    for b, c in _pairs(candidates):
        cam = sum(weight[c, k] * features[b, k] for k in range(weight.shape[1])).clamp(min=0)
        expected = upsample_maps(cam, (24, 24))
        expected = expected / expected.amax() if expected.amax() > 0 else expected
        assert torch.allclose(maps[b, c], expected, atol=ATOL), (b, c)
    assert torch.equal(maps[~candidates], torch.zeros_like(maps[~candidates]))


def test_cam_relu_matters_on_the_trained_model(trained):
    # Without the ReLU the weighted sum has negative parts on this model: the test above sees it.
    model, image, candidates = trained
    with torch.no_grad():
        scores = model(image) - model.head.score.bias[None, :, None, None]
    assert scores[candidates].lt(0).any() and scores[candidates].gt(0).any()


def test_layer_gradient_b_by_k_model_equals_captum():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 3),
    )
    x = torch.randn(2, 3, 8, 8)
    cands = torch.tensor([[True, False, True], [False, True, False]])
    raw = LayerGradient(layers=["1"], at="output").layer_maps(net, x, cands)["1"]
    ref = LayerGradientXActivation(net, net[1], multiply_by_inputs=False)
    for b, c in _pairs(cands):
        expected = max_abs_over_channels(ref.attribute(x, target=c)[b])
        assert torch.allclose(raw[b, c], expected, atol=ATOL)
