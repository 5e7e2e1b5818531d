"""The package's layout is its data flow (issue 8): cell -> session -> install -> observers
(trace, monitors) -> events/measurements -> rules -> report. Observers and rules never reach back
up into the session; they get typed handles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "kernel_ext" / "gradwatch"
LOWER_LAYERS = ["install", "trace", "monitors", "locate", "rules"]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
            found.update("." * node.level + (node.module + "." if node.module else "") + a.name
                         for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("layer", LOWER_LAYERS)
def test_lower_layers_never_import_the_session_or_the_magic(layer):
    modules = sorted((PACKAGE / layer).glob("*.py"))
    assert modules, layer
    for module in modules:
        upward = {name for name in _imports(module)
                  if name.rsplit(".", 1)[-1] in {"session", "magic"} or name.endswith((".session", ".magic"))}
        assert upward == set(), f"{module.relative_to(PACKAGE)} imports {upward}"


def test_no_session_or_monitor_handle_is_typed_any():
    for module in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.arg) and node.arg in {"session", "watch", "handle", "monitor"}:
                assert not (isinstance(node.annotation, ast.Name) and node.annotation.id == "Any"), \
                    f"{module.relative_to(PACKAGE)}: parameter {node.arg!r} is typed Any"
