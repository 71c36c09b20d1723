"""A strategy's init arguments: read back, changed, and written as a config entry.

A strategy keeps each init argument as an attribute of the same name (``alpha``, ``layers``,
``scales``, ``base`` ...), so :func:`strategy_options` reads them back from the instance,
:func:`with_options` builds a copy with some changed, and :func:`strategy_config` gives the
``{class_path, init_args}`` entry a YAML config lists under ``model.init_args.saliency``.
"""

from __future__ import annotations

import inspect
from typing import Any

from dcsm_lightning.saliency.base import SaliencyStrategy

__all__ = ["strategy_config", "strategy_options", "with_options"]


def _init_parameters(cls: type) -> list[str]:
    """The keyword names an instance of ``cls`` takes, following ``**kwargs`` up the classes."""
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names += [p.name for p in params if p.name != "self" and p.kind is p.KEYWORD_ONLY]
        names += [p.name for p in params if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return list(dict.fromkeys(names))


def strategy_options(strategy: SaliencyStrategy) -> dict[str, Any]:
    """The init arguments of ``strategy`` as its attributes hold them (e.g. ``{"alpha": 3.0,
    "layers": ("conv3_1", ...), ...}``); an argument without an attribute is left out.
    ``name`` is kept only where it differs from the strategy's default name."""
    options = {
        name: getattr(strategy, name)
        for name in _init_parameters(type(strategy))
        if hasattr(strategy, name)
    }
    if options.get("name") == type(strategy).default_name:
        del options["name"]
    return options


def with_options(strategy: SaliencyStrategy, **changes: Any) -> SaliencyStrategy:
    """A new strategy of the same class with ``changes`` applied to its init arguments.

    Raises:
        ValueError: an argument the class does not take (its arguments are listed).
    """
    known = _init_parameters(type(strategy))
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise ValueError(
            f"{type(strategy).__name__} takes no {unknown}; its options are {sorted(known)}"
        )
    options = strategy_options(strategy)
    if "name" in known and "name" not in options:
        options["name"] = strategy.name  # a derived name (captum_..., distinct_...) is kept
    return type(strategy)(**{**options, **changes})


def _plain(value: Any) -> Any:
    """A YAML-friendly value: tuples become lists, strategies become config entries."""
    if isinstance(value, SaliencyStrategy):
        return strategy_config(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def strategy_config(strategy: SaliencyStrategy) -> dict[str, Any]:
    """``{"class_path": "<module>.<Class>", "init_args": {...}}`` of ``strategy`` (nested
    strategies, e.g. ``Distinct``'s ``base``, as entries of their own), for a YAML config."""
    cls = type(strategy)
    options = {k: _plain(v) for k, v in strategy_options(strategy).items()}
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": options}
