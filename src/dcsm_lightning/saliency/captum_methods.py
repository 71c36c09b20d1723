"""Which ``captum.attr`` classes :class:`~dcsm_lightning.saliency.CaptumAttribution` can run,
and the checks that refuse the others with the reason, at construction (or, for what depends
on the model, in the strategy's ``setup``, before the first batch).

Every public attribution class of ``captum.attr`` is either run or refused
(``tests/saliency/test_captum_walk.py`` walks them on a ResNet):

- refused at construction: the base classes (no ``attribute``), methods without a class
  target (``LayerActivation``, ``DataLoaderAttribution``, every ``Neuron*``), the LLM
  attributions (text generation), a required constructor argument missing from
  ``method_args`` (``LimeBase``), ``Lime`` / ``KernelShap`` without scikit-learn (their
  default surrogate model), a required ``attribute()`` argument missing from
  ``attribute_args`` (``baselines`` of the ``*Shap`` methods, Occlusion's window), a layer
  method without ``layer`` (or ``layer`` for an input method), and
  ``LayerFeaturePermutation``, whose forward output Captum reduces before choosing the
  target (it fails with any class target);
- refused in ``setup``: the DeepLift family on a model that runs a non-linearity module more
  than once per forward (torchvision ResNets reuse each block's ``ReLU``), which Captum's
  DeepLift rules cannot handle.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from dcsm_lightning.saliency.inputs import preserved_model_state

#: ``attribute()`` arguments the strategy sets itself.
RESERVED = ("inputs", "target")

#: Constructor arguments the strategy passes itself.
_GIVEN = ("self", "forward_func", "model", "layer")

#: Classes that cannot run with a class target whatever the options, and why.
_BROKEN = {
    "LayerFeaturePermutation": (
        "Captum reduces its forward output to one value per image before choosing the target, "
        "so it fails with any class target ('Output must be 2D to select tensor of targets')"
    ),
}

#: Classes whose rules need each non-linearity module to run once per forward.
_ONE_CALL_PER_MODULE = ("DeepLift", "DeepLiftShap", "LayerDeepLift", "LayerDeepLiftShap")


def captum_class(method: str) -> type:
    """The attribution class named ``method``: a ``captum.attr`` name or an import path.

    Raises:
        ValueError: no such class (close ``captum.attr`` names listed), not an attribution,
            or one that cannot give class maps (the reason is given).
    """
    import captum.attr
    from captum.attr import Attribution

    if "." in method:
        module, _, attr = method.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            raise ValueError(f"method: cannot import {method!r}") from None
    else:
        cls = getattr(captum.attr, method, None)
        if cls is None:
            known = [n for n in captum.attr.__all__ if _is_attribution(getattr(captum.attr, n))]
            close = difflib.get_close_matches(method, known, n=3, cutoff=0.5)
            hint = f"did you mean {close}?" if close else f"known: {', '.join(sorted(known))}"
            raise ValueError(f"method: unknown Captum attribution {method!r}; {hint}")
    if not (isinstance(cls, type) and issubclass(cls, Attribution)) or inspect.isabstract(cls):
        raise ValueError(f"method: {method!r} is not a Captum attribution class")
    _check_class(cls, method)
    return cls


def _check_class(cls: type, method: str) -> None:
    """Refuse classes that cannot give a map per class, whatever the options."""
    from captum.attr import NeuronAttribution, NoiseTunnel

    if cls is NoiseTunnel:
        return
    if cls.__name__ in _BROKEN:
        raise ValueError(f"method: {method!r} cannot be used: {_BROKEN[cls.__name__]}")
    if "LLM" in cls.__name__:
        raise ValueError(
            f"method: {method!r} attributes text generation (tokens), not image classes"
        )
    if issubclass(cls, NeuronAttribution):
        raise ValueError(
            f"method: {method!r} is a neuron attribution; it has no class target (use a "
            "layer or input attribution)"
        )
    attribute = getattr(cls, "attribute", None)
    if not callable(attribute):
        raise ValueError(
            f"method: {method!r} is a base class without attribute(); name a method such as "
            "'Saliency' or 'LayerGradCam'"
        )
    if "target" not in inspect.signature(attribute).parameters:
        raise ValueError(
            f"method: {method!r} has no class target (its attribute() takes no target), so "
            "it cannot give a map per class"
        )


def _is_attribution(obj: object) -> bool:
    from captum.attr import Attribution

    return isinstance(obj, type) and issubclass(obj, Attribution) and not inspect.isabstract(obj)


def takes_layer(cls: type) -> bool:
    """Whether ``cls``'s constructor takes a ``layer`` (layer methods, ``GuidedGradCam``)."""
    return "layer" in inspect.signature(cls.__init__).parameters


def check_layer_option(cls: type, method: str, layer: str | None) -> None:
    """Raise ValueError when ``layer`` is missing for a method taking one (layer methods,
    ``GuidedGradCam``), or given for another."""
    if takes_layer(cls) and layer is None:
        raise ValueError(f"layer: {method!r} is a layer attribution and needs layer=<name>")
    if not takes_layer(cls) and layer is not None:
        raise ValueError(f"layer: {method!r} attributes to the input; leave layer unset")


def check_constructor(cls: type, method_args: Mapping[str, Any]) -> None:
    """Refuse unknown or missing constructor arguments, and a surrogate model that is absent."""
    from captum.attr import KernelShap, Lime

    params = inspect.signature(cls.__init__).parameters
    takes = set(params) - set(_GIVEN)
    unknown = set(method_args) - takes
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise ValueError(
            f"method_args: {sorted(unknown)} are not constructor arguments of "
            f"{cls.__name__} (it takes {sorted(takes)})"
        )
    for name in takes:
        p = params[name]
        needed = p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        if needed and name not in method_args:
            raise ValueError(
                f"method_args: {cls.__name__} needs {name!r} (it has no default), e.g. "
                f"method_args: {{{name}: ...}}"
            )
    default_surrogate = cls is KernelShap or (
        issubclass(cls, Lime) and "interpretable_model" not in method_args
    )
    if default_surrogate and importlib.util.find_spec("sklearn") is None:
        raise ValueError(
            f"method: {cls.__name__}'s default surrogate model needs scikit-learn "
            "(pip install scikit-learn)"
            + ("" if cls is KernelShap else ", or pass method_args: {interpretable_model: ...}")
        )


def check_attribute_args(cls: type, inner: type | None, args: Mapping[str, Any]) -> None:
    """Refuse reserved keys and missing required ``attribute()`` arguments."""
    reserved = sorted(set(args) & set(RESERVED))
    if reserved:
        raise ValueError(f"attribute_args: {reserved} are set by the strategy; remove them")
    for klass in (cls, inner):
        if klass is None:
            continue
        params = list(inspect.signature(klass.attribute).parameters.values())[1:]
        for p in params:
            required = p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            if required and p.name not in RESERVED and p.name not in args:
                raise ValueError(
                    f"attribute_args: {klass.__name__} needs {p.name!r} (it has no default), "
                    f"e.g. attribute_args: {{{p.name}: ...}}"
                )


def check_model(cls: type, method: str, model: nn.Module, size: int = 64) -> None:
    """Refuse a model the method cannot serve (found by a probe forward of one image).

    Raises:
        ValueError: a DeepLift method on a model that runs a non-linearity module twice.
    """
    if cls.__name__ not in _ONE_CALL_PER_MODULE:
        return
    calls: dict[str, int] = {}
    leaves = [(p, m) for p, m in model.named_modules() if p and not list(m.children())]

    def counter(path: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            calls[path] = calls.get(path, 0) + 1

        return hook

    handles = [m.register_forward_hook(counter(p)) for p, m in leaves]
    param = next(model.parameters(), None)
    image = torch.zeros(1, 3, size, size, device=None if param is None else param.device)
    try:
        with torch.inference_mode(False), torch.no_grad(), preserved_model_state(model):
            model(image)
    finally:
        for handle in handles:
            handle.remove()
    reused = [p for p, n in calls.items() if n > 1]
    if reused:
        raise ValueError(
            f"method: {method!r} needs each module to run once per forward, but "
            f"{reused[:3]} run more than once (torchvision ResNets reuse each block's ReLU); "
            "use another method (e.g. 'IntegratedGradients') or a model without shared modules"
        )
