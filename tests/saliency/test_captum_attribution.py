"""``CaptumAttribution`` (any ``captum.attr`` method) and ``Distinct`` (Eq. 4 on any strategy)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import torch
from captum.attr import (
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    LayerGradCam,
    LayerGradientXActivation,
    Saliency,
)
from jsonargparse import ArgumentParser
from saliency_refs import Pooled

from dcsm_lightning.saliency import (
    CaptumAttribution,
    Distinct,
    GradCAM,
    SaliencyStrategy,
    create_saliency,
    normalize_by_max,
    subtract_other_candidates,
    upsample_maps,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")

# name -> (strategy options, Captum reference built on the pooled model, attribute kwargs, reduce)
METHODS = {
    "Saliency": ({}, lambda m: Saliency(m), {}, "max_abs"),
    "IntegratedGradients": (
        {"attribute_args": {"n_steps": 8}},
        lambda m: IntegratedGradients(m),
        {"n_steps": 8},
        "max_abs",
    ),
    "InputXGradient": ({}, lambda m: InputXGradient(m), {}, "max_abs"),
    "GuidedBackprop": ({}, lambda m: GuidedBackprop(m), {}, "max_abs"),
    "LayerGradCam": (
        {"layer": "relu4_1", "reduce": "none", "attribute_args": {"relu_attributions": True}},
        lambda m: LayerGradCam(m, m.model.features.relu4_1),
        {"relu_attributions": True},
        "none",
    ),
    "LayerGradientXActivation": (
        {"layer": "conv3_2", "reduce": "sum"},
        lambda m: LayerGradientXActivation(m, m.model.features.conv3_2),
        {},
        "sum",
    ),
}


def _reference(attributions, reduce):
    reduced = {"max_abs": lambda a: a.abs().amax(0), "sum": lambda a: a.sum(0)}.get(
        reduce, lambda a: a[0]
    )(attributions)
    return normalize_by_max(upsample_maps(reduced, (24, 24))).clamp(min=0)


@pytest.mark.parametrize("method", list(METHODS))
def test_method_equals_captum_and_is_non_zero_on_a_trained_model(method, trained):
    model, image, candidates = trained
    options, make_ref, attribute_kwargs, reduce = METHODS[method]
    maps = create_saliency("captum", method=method, **options)(model, image, candidates)
    assert maps[candidates].amax((1, 2)).gt(0).float().mean() >= 0.8
    assert torch.equal(maps[~candidates], torch.zeros_like(maps[~candidates]))
    ref = make_ref(Pooled(model))
    for b, c in candidates.nonzero().tolist():
        attributions = ref.attribute(image[b : b + 1], target=c, **attribute_kwargs)[0]
        assert torch.allclose(maps[b, c], _reference(attributions, reduce), atol=1e-5), (b, c)


def test_noise_tunnel_and_alpha(trained):
    model, image, candidates = trained
    torch.manual_seed(0)
    smooth = CaptumAttribution(
        method="NoiseTunnel",
        method_args={"attribution_method": "Saliency"},
        attribute_args={"nt_type": "smoothgrad", "nt_samples": 4, "stdevs": 0.1},
        alpha=3.0,
    )
    maps = smooth(model, image, candidates)
    assert smooth.name == "captum_noise_tunnel"
    assert maps[candidates].amax((1, 2)).gt(0.9).all() and maps.le(1).all()  # tanh(3) = 0.995
    assert torch.equal(maps[~candidates], torch.zeros_like(maps[~candidates]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "IntegratedGradient"}, "method: unknown.*'IntegratedGradients'"),
        ({"method": "LayerGradCam"}, "layer: 'LayerGradCam' is a layer attribution"),
        ({"method": "Saliency", "layer": "conv3_1"}, "layer: 'Saliency' attributes to the input"),
        ({"method": "GradientShap"}, "attribute_args: GradientShap needs 'baselines'"),
        ({"method": "Occlusion"}, "attribute_args: Occlusion needs 'sliding_window_shapes'"),
        ({"attribute_args": {"target": 1}}, r"attribute_args: \['target'\] are set by"),
        ({"method": "NeuronGradient", "layer": "x"}, "neuron attribution"),
        ({"method": "Saliency", "method_args": {"foo": 1}}, "method_args: .*foo"),
        ({"reduce": "mean"}, "reduce must be one of"),
    ],
)
def test_bad_options_name_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        CaptumAttribution(**options)


def test_captum_and_distinct_from_yaml(trained):
    parser = ArgumentParser()
    parser.add_argument("--saliency", type=list[SaliencyStrategy])
    config = parser.parse_string(
        textwrap.dedent(
            """\
            saliency:
              - class_path: CaptumAttribution
                init_args:
                  name: ig
                  method: IntegratedGradients
                  attribute_args: {n_steps: 4, baselines: 0.0}
              - class_path: Distinct
                init_args:
                  base:
                    class_path: GradCAM
                    init_args: {layer: relu4_1}
            """
        )
    )
    ig, distinct = parser.instantiate(config).saliency
    assert ig.attribute_args == {"n_steps": 4, "baselines": 0.0} and ig.name == "ig"
    assert distinct.name == "distinct_gradcam" and isinstance(distinct.base, GradCAM)
    model, image, candidates = trained
    assert ig(model, image, candidates)[candidates].amax((1, 2)).gt(0).all()


def test_distinct_is_eq4_on_the_base_maps_then_renormalised(trained):
    model, image, candidates = trained
    base = GradCAM(layer="relu4_1")
    plain = base(model, image, candidates)
    distinct = Distinct(base=base)(model, image, candidates)
    expected = normalize_by_max(subtract_other_candidates(plain, candidates))
    assert torch.allclose(distinct, expected, atol=1e-6)
    # Images with two candidates: where one wins, the other's map is 0 (not so for the base).
    two = candidates.sum(1) == 2
    assert two.any() and not torch.allclose(distinct[two], plain[two])
    with_tanh = Distinct(base=base, alpha=3.0, name="dg")(model, image, candidates)
    assert torch.allclose(with_tanh, torch.tanh(3.0 * expected) * candidates[..., None, None])


def test_readme_captum_example_runs():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    (block,) = [b for b in blocks if "CaptumAttribution(" in b]
    namespace: dict = {}
    exec(block, namespace)
    assert namespace["ig"].name == "ig" and namespace["dcsm_by_captum"].engine == "captum"
    assert namespace["distinct_gradcam"].name == "distinct_gradcam"
