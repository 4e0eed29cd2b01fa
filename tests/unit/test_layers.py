"""The library's layers import only downward (README "Architecture"): a rule decided in
`domain` cannot reach for storage, and use cases see storage only through `ledger.ports`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[2] / "layers" / "shared" / "serverless_credits"
PACKAGE = "serverless_credits"

# What each layer may import from the library (besides itself).
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "domain": set(),
    "ledger": {"domain", "config"},
    "storage": {"domain", "config"},
    "reads": {"domain", "storage", "config"},
    "integrations": {"domain", "ledger", "config"},
    "transport": {"domain", "ledger", "storage", "reads", "integrations", "config", "wiring"},
    "wiring": {"domain", "ledger", "storage", "reads", "integrations", "transport", "config"},
}
# Packages no layer below storage/integrations may use: the pure layers stay free of AWS.
AWS_PACKAGES = {"boto3", "botocore"}
NO_AWS = {"domain", "ledger", "reads", "config"}


def _layer(path: Path) -> str:
    relative = path.relative_to(LIBRARY)
    return relative.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PACKAGE:
                found.extend(f"{PACKAGE}.{alias.name}" for alias in node.names)
            else:
                found.append(node.module)
    return found


MODULES = sorted(p for p in LIBRARY.rglob("*.py") if p.name != "__init__.py" or p.parent != LIBRARY)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(LIBRARY)))
def test_each_module_imports_only_from_the_layers_below(path: Path) -> None:
    layer = _layer(path)
    allowed = ALLOWED[layer] | {layer}
    for name in _imports(path):
        top = name.split(".")[0]
        if top == PACKAGE:
            target = name.split(".")[1]
            assert target in allowed, f"{layer} must not import {name}"
        elif layer in NO_AWS:
            assert top not in AWS_PACKAGES, f"{layer} must not import {name}"


def test_every_layer_is_known() -> None:
    layers = {_layer(path) for path in MODULES}
    assert layers <= set(ALLOWED), layers - set(ALLOWED)
