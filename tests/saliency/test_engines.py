"""``engine="captum"`` gives the maps of the default shared-forward engine (Eq. 3 from Captum)."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18

from dcsm_lightning.saliency import DCSM, LayerGradient, Simonyan, create_saliency

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")
TOL = 1e-5

OURS = {
    "simonyan_max_seed": lambda **kw: Simonyan(seed="max", scales=(1.0, 0.75), **kw),
    "layer_gradient_output": lambda **kw: LayerGradient(
        layers=["conv3_1", "relu4_1"], at="output", **kw
    ),
    "dcsm": lambda **kw: DCSM(layers=["conv3_1", "conv3_2", "conv4_1"], **kw),
    "dcsm_authors": lambda **kw: DCSM(
        layers=["conv3_1", "conv4_1"], variant="authors", threshold=0.0, **kw
    ),
}


def _assert_same_non_zero_maps(shared, captum, candidates):
    assert captum.shape == shared.shape
    # Eq. 4 may zero a candidate dominated everywhere; most maps, and one per image, are not 0.
    peaks = shared.amax((2, 3))
    assert peaks.amax(1).gt(0).all() and peaks[candidates].gt(0).float().mean() > 0.5
    assert (captum - shared).abs().max() <= TOL


@pytest.mark.parametrize("kind", list(OURS))
def test_captum_engine_equals_shared_on_our_model(kind, model, image, candidates):
    shared = OURS[kind]()(model, image, candidates)
    captum = OURS[kind](engine="captum")(model, image, candidates)
    _assert_same_non_zero_maps(shared, captum, candidates)


def test_captum_engine_equals_shared_on_resnet18():
    torch.manual_seed(0)
    net = resnet18(weights=None, num_classes=5).eval()
    image = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    candidates = torch.tensor(
        [[True, False, False, True, True], [False, True, False, False, False]]
    )
    for kwargs in (
        {"layers": ["layer2", "layer3", "layer4"]},
        {"layers": ["layer3"], "at": "output"},
    ):
        shared = DCSM(scales=(1.0,), **kwargs)(net, image, candidates)
        captum = DCSM(scales=(1.0,), engine="captum", **kwargs)(net, image, candidates)
        _assert_same_non_zero_maps(shared, captum, candidates)
    shared = Simonyan()(net, image, candidates)
    _assert_same_non_zero_maps(
        shared, Simonyan(engine="captum")(net, image, candidates), candidates
    )


def test_engine_by_name_and_bad_engine():
    assert create_saliency("dcsm", engine="captum").engine == "captum"
    with pytest.raises(ValueError, match="engine must be one of"):
        DCSM(engine="torch")


def test_captum_methods_on_resnet18():
    torch.manual_seed(0)
    net = resnet18(weights=None, num_classes=5).eval()
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    candidates = torch.tensor([[True, False, False, True, False]])
    for options in (
        {"method": "IntegratedGradients", "attribute_args": {"n_steps": 4}},
        {"method": "LayerGradientXActivation", "layer": "layer3"},
    ):
        maps = create_saliency("captum", **options)(net, image, candidates)
        assert maps[candidates].amax((1, 2)).gt(0).all() and maps.le(1).all()
        assert torch.equal(maps[~candidates], torch.zeros_like(maps[~candidates]))
