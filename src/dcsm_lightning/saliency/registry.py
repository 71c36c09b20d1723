"""Registry of saliency strategies: built-ins by decorator, third-party ones by entry point.

A third-party package makes its strategy available with::

    [project.entry-points."dcsm_lightning.saliency"]
    my_method = "my_package.module:MyStrategy"

``create_saliency("my_method", ...)`` then finds it. In YAML (LightningCLI) a parameter typed
:func:`saliency_spec_type` (``SaliencySegmentation(saliency=...)``) takes a strategy in any of these
forms (:func:`as_saliency` turns each into an instance):

- a registry name: ``saliency: dcsm``, ``saliency: [dcsm, simonyan]``,
  ``--model.init_args.saliency=dcsm``;
- ``class_path`` / ``init_args`` with a class name or import path (``class_path: DCSM``,
  ``class_path: my_package.module.MyStrategy``): jsonargparse checks every option;
- ``class_path`` / ``init_args`` with a registry name (``class_path: grad_x_input``): the
  options are checked when the strategy is built.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import warnings
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, Literal, NotRequired, TypedDict, TypeVar, Union

from dcsm_lightning.saliency.base import SaliencyStrategy

#: The entry-point group scanned for third-party strategies.
ENTRY_POINT_GROUP = "dcsm_lightning.saliency"

_REGISTRY: dict[str, type[SaliencyStrategy]] = {}
_PLUGIN_NAMES: set[str] = set()
_discovered = False

S = TypeVar("S", bound=type[SaliencyStrategy])


def register_saliency(name: str) -> Callable[[S], S]:
    """Class decorator: register a :class:`SaliencyStrategy` subclass under ``name``.

    The class's ``default_name`` (the default ``name`` of its instances) becomes ``name``
    unless the class sets its own. Registering a name twice warns; the later class wins.
    """

    def decorator(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, SaliencyStrategy)):
            raise TypeError(
                f"register_saliency({name!r}) needs a SaliencyStrategy subclass, got {cls!r}"
            )
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            warnings.warn(
                f"saliency strategy {name!r} is registered twice ({_REGISTRY[name].__qualname__} "
                f"and {cls.__qualname__}); the later one wins",
                stacklevel=2,
            )
        if "default_name" not in cls.__dict__:
            cls.default_name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def discover_plugins() -> None:
    """Load the strategies of the entry-point group ``dcsm_lightning.saliency`` (once).

    An entry point must name a :class:`SaliencyStrategy` subclass. One whose name is already
    registered by another class is skipped with a warning (the registered class wins), and
    so is one that fails to load.
    """
    global _discovered
    if _discovered:
        return
    _discovered = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as err:  # a broken plugin must not break the library
            warnings.warn(
                f"could not load saliency plugin {ep.name!r} ({ep.value}): {err}", stacklevel=2
            )
            continue
        if not (isinstance(cls, type) and issubclass(cls, SaliencyStrategy)):
            warnings.warn(
                f"saliency plugin {ep.name!r} ({ep.value}) is not a SaliencyStrategy subclass; "
                "skipped",
                stacklevel=2,
            )
            continue
        known = _REGISTRY.get(ep.name)
        if known is not None and known is not cls:
            warnings.warn(
                f"saliency plugin {ep.name!r} ({ep.value}) clashes with the registered "
                f"{known.__module__}.{known.__qualname__}; the registered one is kept",
                stacklevel=2,
            )
            continue
        register_saliency(ep.name)(cls)
        _PLUGIN_NAMES.add(ep.name)


def clear_discovery_cache() -> None:
    """Forget the plugins loaded so far and rescan the entry points on the next lookup.

    Also invalidates ``importlib``'s caches, so packages put on ``sys.path`` since are seen.
    """
    global _discovered
    for name in _PLUGIN_NAMES:
        _REGISTRY.pop(name, None)
    _PLUGIN_NAMES.clear()
    _discovered = False
    importlib.invalidate_caches()


def list_saliency(pattern: str = "*") -> list[str]:
    """Names of the known strategies (built-in and plugins) matching a glob ``pattern``, sorted."""
    discover_plugins()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def get_saliency_class(name: str) -> type[SaliencyStrategy]:
    """The class registered under ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    discover_plugins()
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown saliency strategy {name!r}; known strategies: {', '.join(list_saliency())}"
        )
    return _REGISTRY[name]


def create_saliency(name: str, /, **kwargs: Any) -> SaliencyStrategy:
    """Build the strategy registered under ``name`` with its init arguments.

    ``name`` is positional, so ``name=...`` among ``kwargs`` sets the instance's log name.

    Example:
        >>> from dcsm_lightning.saliency import create_saliency
        >>> create_saliency("dcsm", scales=(1.0,), name="dcsm_1x").name
        'dcsm_1x'

    Raises:
        ValueError: unknown name (the message lists the known ones) or a bad option.
    """
    cls = get_saliency_class(name)
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as err:  # e.g. a required option missing
        raise ValueError(f"saliency strategy {name!r}: {err}") from None
    try:
        return cls(**kwargs)
    except TypeError as err:
        if "unexpected keyword argument" not in str(err):
            raise
        option = str(err).rsplit(" ", 1)[-1]
        raise ValueError(f"saliency strategy {name!r} has no option {option}") from None


def saliency_spec_type() -> Any:
    """The type of a strategy in a signature that LightningCLI / jsonargparse fills.

    ``SaliencyStrategy | SaliencyByName | Literal[<registered names>]`` where
    ``SaliencyByName`` is a dict ``{"class_path": <registered name>, "init_args": {...}}``.
    The names are those registered when this is called, entry-point plugins included, so
    ``--help`` lists them. Turn a value into a strategy with :func:`as_saliency`.
    """
    names = Literal[tuple(list_saliency())]  # type: ignore[valid-type]
    by_name = TypedDict(  # noqa: UP013 (class syntax cannot take the runtime Literal)
        "SaliencyByName", {"class_path": names, "init_args": NotRequired[dict[str, Any]]}
    )
    # The names last: an unknown name's error then lists the known ones.
    return Union[SaliencyStrategy, by_name, names]  # noqa: UP007 (a runtime type object)


def as_saliency(spec: SaliencyStrategy | str | Mapping[str, Any]) -> SaliencyStrategy:
    """A strategy from an instance, a registry name or ``{"class_path": name, "init_args": {}}``.

    Raises:
        ValueError: unknown name (the known ones are listed), unknown option, or another kind
            of value.
    """
    if isinstance(spec, SaliencyStrategy):
        return spec
    if isinstance(spec, str):
        return create_saliency(spec)
    if (
        isinstance(spec, Mapping)
        and "class_path" in spec
        and set(spec) <= {"class_path", "init_args"}
    ):
        return create_saliency(str(spec["class_path"]), **dict(spec.get("init_args") or {}))
    raise ValueError(
        "a saliency strategy must be a SaliencyStrategy, a registered name or a dict with "
        f"class_path (and init_args), got {spec!r}"
    )
