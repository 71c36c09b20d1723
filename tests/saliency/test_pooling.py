"""Score pooling follows the model (issue 19): candidates, scores and the backward seed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dcsm_lightning import SaliencySegmentation
from dcsm_lightning.saliency import (
    GradCAM,
    Simonyan,
    candidates_from_scores,
    model_pool,
    pool_scores,
)
from dcsm_lightning.segmentation.flow import SaliencyMaps


class AvgNet(nn.Module):
    score_pool = "avg"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.score = nn.Conv2d(4, 3, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.score(self.features(image))


def test_pool_scores_and_model_pool():
    out = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(pool_scores(out, "avg"), out.mean(dim=(2, 3)))
    assert torch.equal(pool_scores(out, "max"), out.amax(dim=(2, 3)))
    lse = pool_scores(out, lambda m: m.flatten(2).logsumexp(2))
    assert torch.allclose(lse, out.flatten(2).logsumexp(2))
    assert model_pool(AvgNet()) == "avg" and model_pool(nn.Identity()) == "max"
    assert model_pool(AvgNet(), "max") == "max"
    with pytest.raises(ValueError, match="pool must be"):
        pool_scores(out, "mean")
    with pytest.raises(ValueError, match="B x K"):
        pool_scores(out, lambda m: m.flatten(1))


def test_callback_scores_follow_the_pool_option_and_the_modules_own():
    # Issue 19: the callback max-pooled every score map (before: no pool option at all).
    net, image = AvgNet().eval(), torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = torch.sigmoid(net(image).mean(dim=(2, 3)))
    declared = SaliencyMaps.probs(net, image)  # the module's score_pool
    given = SaliencyMaps.probs(nn.Sequential(net), image, pool="avg")
    assert torch.allclose(declared, expected) and torch.allclose(given, expected)
    assert SaliencySegmentation("simonyan", num_classes=3, pool="avg").source.pool == "avg"


def test_candidates_from_a_score_map_and_the_seed_from_the_pool():
    net, image = AvgNet().eval(), torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        out = net(image)
    chosen = candidates_from_scores(out, None, 0.5, 0, model=net)
    assert torch.equal(chosen, torch.sigmoid(out.mean(dim=(2, 3))) > 0.5)
    # seed="pool" with avg pooling = the paper's "sum" seed up to a constant: the same maps.
    cands = torch.ones(2, 3, dtype=torch.bool)
    assert torch.allclose(GradCAM(layer="features", seed="pool")(net, image, cands),
                          GradCAM(layer="features", seed="sum")(net, image, cands))  # fmt: skip
    assert not torch.allclose(Simonyan(seed="pool", pool="max")(net, image, cands),
                              Simonyan(seed="sum")(net, image, cands))  # fmt: skip
