"""The configs shipped inside the package, found by name from any folder.

``dcsm-lightning fit --config synthetic`` (or ``synthetic.yaml``, ``configs/synthetic.yaml``,
``data/glyphs``) reads the packaged ``configs/synthetic.yaml`` whenever no such file exists
where the command runs; an existing file always wins, so a user's own ``configs/`` folder is
never shadowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

__all__ = ["shipped_configs", "with_shipped_configs"]

_OPTIONS = ("-c", "--config")
_SUFFIXES = (".yaml", ".yml")


def shipped_configs() -> dict[str, Path]:
    """Name -> path of every shipped config: ``{"synthetic": .../configs/synthetic.yaml,
    "data/glyphs": .../configs/data/glyphs.yaml, ...}``."""
    root = Path(str(files("dcsm_lightning") / "configs"))
    return {
        path.relative_to(root).with_suffix("").as_posix(): path
        for path in sorted(root.rglob("*"))
        if path.suffix in _SUFFIXES
    }


def _resolve(value: str, shipped: dict[str, Path]) -> str:
    if Path(value).expanduser().exists():
        return value
    name = value.removeprefix("configs/")
    for suffix in _SUFFIXES:
        name = name.removesuffix(suffix)
    return str(shipped[name]) if name in shipped else value


def with_shipped_configs(args: Sequence[str]) -> list[str]:
    """``args`` with each ``--config`` / ``-c`` value that names no file but a shipped config
    replaced by that config's path (``--config=VALUE`` too); everything else unchanged."""
    shipped = shipped_configs()
    out: list[str] = []
    expect_value = False
    for arg in args:
        if expect_value:
            out.append(_resolve(arg, shipped))
            expect_value = False
        elif arg in _OPTIONS:
            out.append(arg)
            expect_value = True
        elif arg.startswith("--config="):
            out.append("--config=" + _resolve(arg.removeprefix("--config="), shipped))
        else:
            out.append(arg)
    return out
