"""The call contract: output range, model state, eval mode, inference mode, bad input."""

from __future__ import annotations

import pytest
import torch
from saliency_refs import assert_unchanged, model_snapshot, tiny_fcn
from torch import nn

from dcsm_lightning.saliency import (
    CAM,
    DCSM,
    GradCAM,
    LayerGradient,
    Simonyan,
    create_saliency,
    select_candidates,
)

STRATEGIES = {
    "simonyan": lambda: Simonyan(scales=(1.0, 0.75)),
    "layer_gradient": lambda: LayerGradient(layers=["conv3_1", "relu4_1"], backprop="guided"),
    "dcsm": lambda: DCSM(layers=["conv3_1", "conv3_2", "conv4_1"]),
    "dcsm_authors": lambda: DCSM(layers=["conv3_1", "conv4_1"], variant="authors", threshold=0.0),
    "gradcam": lambda: GradCAM(layer="relu4_1"),  # all-zero (ReLU'd) on this random model
    "cam": lambda: CAM(),  # idem
}


def _training_model() -> nn.Module:
    """Train mode with BatchNorm and Dropout, one part in eval, some parameters frozen."""
    model = tiny_fcn(batch_norm=True, dropout=True).train()
    model.features.bn2_1.eval()
    model.features.conv1_1.requires_grad_(False)
    return model


@pytest.mark.parametrize("kind", list(STRATEGIES))
def test_output_contract_and_model_left_as_it_was(kind, image, candidates):
    model = _training_model()
    before = model_snapshot(model)
    caller_image = image.clone()
    maps = STRATEGIES[kind]()(model, image, candidates)
    assert maps.shape == (2, 4, 24, 24) and maps.dtype == torch.float32
    assert maps.min() >= 0 and maps.max() <= 1
    assert torch.equal(maps[~candidates], torch.zeros_like(maps[~candidates]))
    assert kind in ("gradcam", "cam") or maps[candidates].amax((1, 2)).gt(0).any()
    assert not maps.requires_grad
    assert torch.equal(image, caller_image) and not image.requires_grad
    assert_unchanged(model, before)


def test_saliency_runs_in_eval_mode(image, candidates):
    model = _training_model()
    strategy = DCSM(layers=["conv3_1", "conv4_1"])
    first, second = strategy(model, image, candidates), strategy(model, image, candidates)
    assert torch.equal(first, second)  # Dropout off, BatchNorm on running statistics
    assert torch.equal(first, strategy(model.eval(), image, candidates))


def test_works_under_inference_mode_with_an_inference_image(model, image, candidates):
    strategy = DCSM(layers=["conv3_1", "conv4_1"])
    expected = strategy(model, image, candidates)
    with torch.inference_mode():
        frozen = image.clone()
        maps = strategy(model, frozen, candidates)
    assert frozen.is_inference()
    assert torch.allclose(maps, expected)


def test_no_candidates_gives_zeros(model, image):
    maps = DCSM(layers=["conv3_1"])(model, image, torch.zeros(2, 4, dtype=torch.bool))
    assert torch.equal(maps, torch.zeros(2, 4, 24, 24))


def test_candidates_default_to_select_candidates_at_scale_one(model, image):
    strategy = DCSM(layers=["conv3_1"], min_candidates=2)
    with torch.no_grad():
        probs = torch.sigmoid(model(image).amax((2, 3)))
    chosen = select_candidates(probs, 0.5, 2)
    assert torch.equal(strategy(model, image), strategy(model, image, chosen))


def test_name_defaults_to_the_registry_name_and_can_be_set():
    assert DCSM().name == "dcsm" and Simonyan().name == "simonyan"
    assert create_saliency("dcsm", backprop="bp", name="dcsm_bp").name == "dcsm_bp"
    assert "dcsm_bp" in repr(create_saliency("dcsm", name="dcsm_bp"))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m, x, c: DCSM(layers=["conv3_l"])(m, x, c), r"conv3_l.*close matches.*conv3_1"),
        (lambda m, x, c: DCSM(layers=["conv3_1"])(m, x, c.float()), "candidates must be a bool"),
        (lambda m, x, c: DCSM(layers=["conv3_1"])(m, x, c[:1]), "candidates must have shape"),
        (lambda m, x, c: DCSM(layers=["conv3_1"])(m, x, c[:, :3]), "candidates has K = 3"),
        (lambda m, x, c: DCSM(layers=["conv3_1"])(m, x[0], c), "image must be a float"),
        (lambda m, x, c: Simonyan()(m, x.long(), c), "image must be a float"),
        (
            lambda m, x, c: Simonyan()(m, x.index_fill(3, torch.tensor([2]), float("nan")), c),
            "image contains NaN",
        ),
    ],
)
def test_bad_input_raises_and_leaves_the_model(call, match, image, candidates):
    model = _training_model()
    before = model_snapshot(model)
    with pytest.raises(ValueError, match=match):
        call(model, image, candidates)
    assert_unchanged(model, before)


class _Reshaped(nn.Module):
    def __init__(self, inner: nn.Module, kind: str) -> None:
        super().__init__()
        self.inner, self.kind = inner, kind

    def forward(self, x: torch.Tensor):
        out = self.inner(x)
        if self.kind == "3d":
            return out.flatten(2)
        if self.kind == "tuple":
            return (out,)
        return out * float("nan")


@pytest.mark.parametrize(
    ("kind", "match"),
    [("3d", "model output must be"), ("tuple", "model output must be"), ("nan", "NaN")],
)
@pytest.mark.parametrize(
    "make", [lambda: Simonyan(), lambda: DCSM(layers=["conv3_1"]), lambda: CAM(classifier="score")]
)
def test_bad_model_output_raises_and_leaves_the_model(kind, match, make, image, candidates):
    model = _Reshaped(_training_model(), kind).train()
    before = model_snapshot(model)
    with pytest.raises(ValueError, match=match):
        make()(model, image, candidates)
    assert_unchanged(model, before)


def test_ambiguous_layer_name(image, candidates):
    model = nn.Sequential(tiny_fcn(), tiny_fcn())
    with pytest.raises(ValueError, match="ambiguous.*0.features.conv3_1.*1.features.conv3_1"):
        DCSM(layers=["conv3_1"])(model, image, candidates)


def test_layer_modified_in_place_is_an_error(image, candidates):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 1))
    with pytest.raises(ValueError, match="modified in place"):
        LayerGradient(layers=["0"], at="output")(model, image, candidates)
    # The input of the next layer is fine.
    assert LayerGradient(layers=["2"], at="input")(model, image, candidates).shape == (2, 4, 24, 24)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scales": ()}, "scales"),
        ({"scales": (1.0, -1.0)}, "scales"),
        ({"alpha": 0.0}, "alpha"),
        ({"at": "middle"}, "at"),
        ({"backprop": "deconv"}, "backprop"),
        ({"normalize": "l2"}, "normalize"),
        ({"variant": "mine"}, "variant"),
        ({"seed": "mean"}, "seed"),
        ({"layers": "conv3_1"}, "layers"),
        ({"min_candidates": -1}, "min_candidates"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DCSM(**kwargs)


def test_same_layer_twice_is_an_error(model, image, candidates):
    with pytest.raises(ValueError, match="more than once"):
        DCSM(layers=["conv3_1", "features.conv3_1"])(model, image, candidates)


def test_output_is_a_normal_tensor_under_inference_mode(model, image, candidates):
    with torch.inference_mode():
        maps = DCSM(layers=["conv3_1"], scales=(1.0,))(model, image, candidates)
    assert not maps.is_inference()
