"""Every public captum.attr attribution class either gives class maps or is refused (issue 19).

Walks ``captum.attr.__all__`` on a small torchvision ResNet-18 (32 px, 3 classes): each class
is built as ``CaptumAttribution(method=<name>, ...)`` with the options it needs (a layer, a
feature mask to keep perturbation methods fast); it must either give non-zero maps for every
candidate or be refused with a one-line ValueError at construction, or, for what depends on
the model, in ``setup`` before the first batch.
"""

from __future__ import annotations

import importlib.util

import captum.attr
import pytest
import torch
from captum._utils.models.linear_model import SGDLasso
from torchvision.models import resnet18

from dcsm_lightning.saliency import CaptumAttribution
from dcsm_lightning.saliency.captum_methods import takes_layer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SIZE = 64
HALF = SIZE // 2
_quarters = (torch.arange(SIZE)[:, None] // HALF) * 2 + torch.arange(SIZE)[None, :] // HALF
MASK = _quarters.expand(1, 3, SIZE, SIZE).contiguous()  # 4 features: image quarters
HALVES = (torch.arange(SIZE)[None, :] // HALF).expand(1, 3, SIZE, SIZE).contiguous()
BASELINES = torch.zeros(2, 3, SIZE, SIZE)

#: the options a class needs to run fast here (layer methods get layer4 or a leaf of it)
OPTIONS = {
    "FeatureAblation": {"attribute_args": {"feature_mask": MASK}},
    "FeaturePermutation": {"attribute_args": {"feature_mask": MASK}},
    "ShapleyValueSampling": {"attribute_args": {"feature_mask": MASK, "n_samples": 2}},
    "ShapleyValues": {"attribute_args": {"feature_mask": HALVES}},
    "Lime": {  # Captum's torch surrogate: no scikit-learn needed
        "method_args": {"interpretable_model": SGDLasso()},
        "attribute_args": {"feature_mask": MASK, "n_samples": 8},
    },
    "KernelShap": {"attribute_args": {"feature_mask": MASK, "n_samples": 8}},
    "Occlusion": {"attribute_args": {"sliding_window_shapes": (3, HALF, HALF), "strides": HALF}},
    "GradientShap": {"attribute_args": {"baselines": BASELINES}},
    "DeepLiftShap": {"attribute_args": {"baselines": BASELINES}},
    "LayerGradientShap": {"attribute_args": {"baselines": BASELINES}},
    "LayerDeepLiftShap": {"attribute_args": {"baselines": BASELINES}},
    "IntegratedGradients": {"attribute_args": {"n_steps": 4}},
    "LayerIntegratedGradients": {"attribute_args": {"n_steps": 4}},
    "LayerConductance": {"attribute_args": {"n_steps": 4}},
    "InternalInfluence": {"attribute_args": {"n_steps": 4}},
    "LayerFeatureAblation": {
        "attribute_args": {"layer_mask": (torch.arange(512) // 128).view(1, 512, 1, 1)}
    },
    "LayerLRP": {"layer": "layer4.1.conv2"},  # LRP's rules sit on leaf modules
    "GuidedGradCam": {"layer": "layer3"},  # layer4 is 2 x 2 here: its Grad-CAM may be all 0
    "NoiseTunnel": {"attribute_args": {"nt_samples": 2}},
}

#: refused whatever the model (at construction), and the words their reason must contain
REFUSED = {
    "Attribution": "base class",
    "GradientAttribution": "base class",
    "PerturbationAttribution": "base class",
    "LayerAttribution": "base class",
    "NeuronAttribution": "neuron attribution",
    "DataLoaderAttribution": "no class target",
    "LayerActivation": "no class target",
    "LimeBase": "LimeBase needs '",
    "LayerFeaturePermutation": "any class target",
    "LLMAttribution": "text generation",
    "LLMGradientAttribution": "text generation",
    "RemoteLLMAttribution": "text generation",
}
#: refused for this model in setup (torchvision's BasicBlock runs its ReLU twice)
REFUSED_FOR_RESNET = {"DeepLift", "DeepLiftShap", "LayerDeepLift", "LayerDeepLiftShap"}
if importlib.util.find_spec("sklearn") is None:  # KernelShap's surrogate model
    REFUSED["KernelShap"] = "needs scikit-learn"


def _attribution_names() -> list[str]:
    return sorted(
        n
        for n in captum.attr.__all__
        if isinstance(getattr(captum.attr, n), type)
        and issubclass(getattr(captum.attr, n), captum.attr.Attribution)
    )


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return resnet18(weights=None, num_classes=3).eval()


@pytest.mark.parametrize("method", _attribution_names())
def test_every_captum_class_works_or_is_refused(resnet, method):
    options = dict(OPTIONS.get(method, {}))
    cls = getattr(captum.attr, method)
    if "layer" not in options and isinstance(cls, type) and _layered(cls):
        options["layer"] = "layer4"
    image = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    candidates = torch.tensor([[True, False, True], [False, True, False]])
    if method.startswith("Neuron"):
        expected = "neuron attribution"
    else:
        expected = REFUSED.get(method)
    if expected is not None:
        with pytest.raises(ValueError, match=expected) as err:
            CaptumAttribution(method=method, **options)
        assert "\n" not in str(err.value)
        return
    strategy = CaptumAttribution(method=method, **options)
    if method in REFUSED_FOR_RESNET:
        with pytest.raises(ValueError, match="run more than once") as err:
            strategy.setup(resnet)
        assert "\n" not in str(err.value)
        return
    strategy.setup(resnet)
    maps = strategy(resnet, image, candidates)
    assert maps.shape == (2, 3, SIZE, SIZE)
    assert maps[candidates].flatten(1).amax(1).gt(0).all(), method
    assert maps[~candidates].eq(0).all()


def _layered(cls: type) -> bool:
    try:
        return takes_layer(cls)
    except (TypeError, ValueError):
        return False


def test_guided_gradcam_and_layer_methods_take_layer(resnet):
    # Issue 19: GuidedGradCam was refused with layer= ("attributes to the input") and failed
    # on the first image without it; it is a layer-taking method like LayerGradCam now.
    strategy = CaptumAttribution(method="GuidedGradCam", layer="layer3")
    image = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    maps = strategy(resnet, image, torch.tensor([[True, False, True]]))
    assert maps[0, [0, 2]].flatten(1).amax(1).gt(0).all()
    with pytest.raises(ValueError, match="needs layer=<name>"):
        CaptumAttribution(method="GuidedGradCam")
