"""Which tensors does the user evidently mean to train? Read it off the cell's source.

Besides an optimizer's parameters, a tensor is meant to be trained when the code reads its
``.grad`` or updates it in place (``w -= lr * w.grad``, ``w.data.sub_(...)``, ``w.add_(...)``).
"""

from __future__ import annotations

import ast
import re

_GRAD_WORD = re.compile(r"\bgrad\b")  # not `zero_grad`, `requires_grad`; non-ASCII names are NFKC-folded
_UPDATE_METHODS = {"sub_", "add_", "copy_", "addcmul_", "addcdiv_", "mul_"}


def trained_names(code: str) -> set[str]:
    if code.isascii() and not _GRAD_WORD.search(code):
        return set()  # every rule below needs a `.grad`: no need to parse a long cell
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    names: set[str] = set()
    loops: dict[str, list[str]] = {}  # `for p in (w, b):` -> p stands for w and b
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.comprehension)) and isinstance(node.target, ast.Name):
            source = node.iter
            if isinstance(source, ast.Call) and getattr(source.func, "id", None) == "enumerate" \
                    and source.args:
                source = source.args[0]
            if isinstance(source, (ast.Tuple, ast.List)):
                loops[node.target.id] = [e.id for e in source.elts if isinstance(e, ast.Name)]
            elif isinstance(source, ast.Name):
                loops[node.target.id] = [source.id]  # a list of tensors, resolved later
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "grad":
            base = _base_name(node.value)
            if base:
                names.add(base)
        elif isinstance(node, ast.AugAssign) and _updates_with_grad(node.value):
            base = _base_name(node.target)
            if base:
                names.add(base)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in _UPDATE_METHODS \
                and any(_updates_with_grad(a) for a in node.args):
            base = _base_name(node.func.value)
            if base:
                names.add(base)
    for name in list(names):
        names.update(loops.get(name, ()))
    return names


def _base_name(node: ast.AST) -> str | None:
    """``w`` for ``w``, ``w.data``, ``w.grad``; None for anything more complex."""
    while isinstance(node, ast.Attribute) and node.attr in ("data", "grad"):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _updates_with_grad(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr == "grad" for n in ast.walk(node))
