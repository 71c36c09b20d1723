"""The public extension point: a strategy written as the ``SaliencyStrategy`` docstring says."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from jsonargparse import ArgumentParser
from saliency_refs import Pooled

import dcsm_lightning.saliency as saliency
from dcsm_lightning.saliency import (
    DCSM,
    SaliencyStrategy,
    class_gradients,
    normalize_by_max,
    upsample_maps,
)


class InputTimesGradient(SaliencyStrategy):
    """The docstring's example strategy: ``max_k |x * dS_c/dx|``, divided by its max."""

    def __init__(self, *, gain: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gain = gain

    def scale_maps(self, model, image, slots, size):
        grads = class_gradients(model, image, slots, None, seed=self.seed).grads[0]
        maps = (grads * image).abs().amax(dim=2).transpose(0, 1)  # B x N x h x w
        return normalize_by_max(upsample_maps(self.gain * maps, size))


def test_documented_extension_point_against_a_hand_computation(model, image, candidates):
    maps = InputTimesGradient(scales=(1.0, 0.5))(model, image, candidates)
    pooled = Pooled(model)
    for b, c in candidates.nonzero().tolist():
        expected = []
        for scale in (1.0, 0.5):
            x = torch.nn.functional.interpolate(
                image[b : b + 1], scale_factor=scale, mode="bilinear", align_corners=False
            ).requires_grad_(True)
            (grad,) = torch.autograd.grad(pooled(x)[0, c], x)
            term = upsample_maps((grad * x).detach().abs().amax(1), (24, 24))
            expected.append(normalize_by_max(term))
        expected = torch.stack(expected).mean(0)[0]
        assert expected.amax() > 0
        assert torch.allclose(maps[b, c], expected, atol=1e-6), (b, c)
    assert torch.equal(maps[~candidates], torch.zeros_like(maps[~candidates]))


def test_keyword_base_options_reach_the_cli_signature():
    parser = ArgumentParser()
    parser.add_argument("--s", type=SaliencyStrategy)
    config = parser.parse_args(
        [f"--s={__name__}.InputTimesGradient", "--s.gain=2", "--s.scales=[0.5]", "--s.name=ixg"]
    )
    strategy = parser.instantiate(config).s
    assert (strategy.gain, strategy.scales, strategy.name) == (2.0, (0.5,), "ixg")
    # DCSM: its own defaults, LayerGradient's options and the base's, all by keyword.
    config = parser.parse_args(["--s=DCSM", "--s.alpha=2", "--s.min_candidates=1"])
    dcsm = parser.instantiate(config).s
    assert (dcsm.alpha, dcsm.min_candidates, dcsm.backprop, dcsm.scales) == (
        2.0, 1, "guided", (0.8, 1.0, 1.2)
    )  # fmt: skip


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        DCSM("dcsm_2")  # type: ignore[misc]


def test_all_holds_public_documented_names_only():
    for name in saliency.__all__:
        obj = getattr(saliency, name)
        assert not name.startswith("_")
        if callable(obj):
            assert obj.__doc__ and obj.__module__.startswith("dcsm_lightning.saliency"), name
    internals = {"backward_per_slot", "classifier_weight", "preserved_model_state", "rescale"}
    assert not internals & set(saliency.__all__)
    assert {"max_pool_scores", "class_gradients", "SaliencyStrategy"} <= set(saliency.__all__)
