"""docs/contracts.md is true: every import between packages goes up its list of layers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "dcsm_lightning"


def _layers() -> dict[str, int]:
    """Module prefix -> layer number, from the numbered list of docs/contracts.md."""
    text = (ROOT / "docs" / "contracts.md").read_text()
    layers = {}
    for number, line in re.findall(r"^(\d+)\. (.+)$", text, flags=re.M):
        for name in re.findall(r"`([a-z_.]+)`", line.split("(")[0]):
            layers[name] = int(number)
    return layers


def _layer(module: str, layers: dict[str, int]) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in layers:
            return layers[".".join(parts[:n])]
    raise AssertionError(f"{module} is in no layer of docs/contracts.md")


def test_every_import_goes_up_the_layers() -> None:
    layers = _layers()
    expected = {"palette", "files", "segmentation.labels", "segmentation.callback", "app"}
    assert expected <= set(layers)
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).with_suffix("")
        module = ".".join(p for p in relative.parts if p != "__init__") or "__init__"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "dcsm_lightning."
            ):
                target = node.module.removeprefix("dcsm_lightning.")
                if target.split(".")[0] == module.split(".")[0]:
                    continue  # inside one package (e.g. models/__init__ -> models.fcn)
                mine, theirs = _layer(module, layers), _layer(target, layers)
                if theirs >= mine:
                    wrong.append(f"{module} (layer {mine}) imports {target} (layer {theirs})")
    assert not wrong, "\n".join(wrong)


def test_models_do_not_import_the_evaluation_flow() -> None:
    """The modules take the flow as an object (``segmentation``); models/ never imports it."""
    found = []
    for path in (PACKAGE / "models").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            found += [f"{path.name}: {n}" for n in names if n.startswith("dcsm_lightning.segment")]
    assert not found, found
