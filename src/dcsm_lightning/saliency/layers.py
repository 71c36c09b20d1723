"""Find a model's layers by module path, with suffix matching and helpful errors.

A layer name is a module path as printed by ``model.named_modules()``. A name that is not a full
path also matches every module whose path ends with ``"." + name``, so ``conv3_1`` finds
``backbone.features.conv3_1``; more than one such module is an error, and so is none (the
message lists close matches).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from torch import nn


def resolve_layer(model: nn.Module, name: str) -> tuple[str, nn.Module]:
    """The module of ``model`` named ``name``: an exact path, else a unique path suffix.

    Args:
        model: any ``nn.Module``.
        name: a module path (``backbone.features.conv3_1``) or its tail (``conv3_1``,
            ``features.conv3_1``).

    Returns:
        ``(full_path, module)``.

    Raises:
        ValueError: no module has that path or tail (close matches listed), or several do.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"layer name must be a non-empty string, got {name!r}")
    paths = dict(model.named_modules())
    if name in paths:
        return name, paths[name]
    suffix = "." + name
    matches = [p for p in paths if p.endswith(suffix)]
    if len(matches) == 1:
        return matches[0], paths[matches[0]]
    if matches:
        raise ValueError(
            f"layer name {name!r} is ambiguous: it matches {matches}; give a longer path"
        )
    raise ValueError(
        f"layer {name!r} not found in {type(model).__name__}; {_close_matches(name, paths)}"
    )


def resolve_layers(model: nn.Module, names: Sequence[str]) -> list[tuple[str, nn.Module]]:
    """:func:`resolve_layer` for each name, in order (see there for errors)."""
    return [resolve_layer(model, n) for n in names]


def _close_matches(name: str, paths: dict[str, nn.Module]) -> str:
    candidates = [p for p in paths if p]
    tails = {p.rsplit(".", 1)[-1]: p for p in candidates}
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    close += [tails[t] for t in difflib.get_close_matches(name, list(tails), n=5, cutoff=0.5)]
    close = list(dict.fromkeys(close))[:6]
    if close:
        return f"close matches: {close}"
    shown = candidates[:12]
    more = f" ... ({len(candidates)} in all)" if len(candidates) > len(shown) else ""
    return f"no close match; the model's layers include {shown}{more}"
