"""The exception a watched cell ended with, read as a gradient bug: its facts, while the frames live.

Two kinds of exceptions are about gradients although ``backward()`` did not raise them:

- reading a ``.grad`` that is ``None`` (``AttributeError: 'NoneType' object has no attribute
  'data'``, ``TypeError: unsupported operand type(s) for *: 'float' and 'NoneType'``): the
  question is *why* that ``.grad`` is ``None``, and the answer is somewhere else (the tensor
  never required grad, was rebound under ``no_grad``, is not a leaf, was cut off the loss, or no
  ``backward()`` had run yet);
- an in-place op on a leaf that requires grad (or a view of one), which autograd refuses at the
  op itself.

The raising line is found in the traceback (the innermost frame of the user's code); the tensors
are looked up in that frame by the names the line uses, without calling anything.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, Callable

import torch

from ..diagnostics import Location
from ..events import GradNoneEvent, InplaceLeafEvent, TensorFact
from .provenance import Node, Provenance

_NONE_GRAD = re.compile(r"'NoneType'|NoneType\b")
_INPLACE_LEAF = re.compile(r"(a view of )?a leaf Variable that requires grad (is being used in|has been moved into) "
                           r"an in-place operation")
_MAX_ANCESTRY = 200_000


@dataclass
class Helpers:
    """What the explanation needs from the session, as plain callables."""

    provenance: Provenance
    location: Callable[[Any], Location | None]
    is_user_file: Callable[[str], bool]
    fact: Callable[[torch.Tensor, list[dict[str, Any]]], TensorFact]  # tensor, extra namespaces
    n_backward: Callable[[], int]


def user_raise_point(tb: TracebackType | None, is_user_file: Callable[[str], bool]
                     ) -> tuple[FrameType, int] | None:
    """The innermost traceback entry in the user's code: (frame, instruction offset)."""
    found = None
    while tb is not None:
        if is_user_file(tb.tb_frame.f_code.co_filename):
            found = (tb.tb_frame, tb.tb_lasti)
        tb = tb.tb_next
    return found


def explain(exc: BaseException, helpers: Helpers) -> GradNoneEvent | InplaceLeafEvent | None:
    point = user_raise_point(exc.__traceback__, helpers.is_user_file)
    if point is None:
        return None
    frame, lasti = point
    where = helpers.location((frame.f_code, lasti))
    if where is None:
        return None
    message = str(exc)
    if isinstance(exc, RuntimeError) and _INPLACE_LEAF.search(message):
        return InplaceLeafEvent(location=where, view="a view of" in message,
                                target=_inplace_target(where.source))
    if isinstance(exc, (AttributeError, TypeError)) and _NONE_GRAD.search(message):
        return _grad_none(frame, where, helpers)
    return None


# --- a None .grad ----------------------------------------------------------------------------------
def _grad_none(frame: FrameType, where: Location, helpers: Helpers) -> GradNoneEvent | None:
    for expression in _grad_bases(where.source):
        t = _lookup(expression, frame)
        # a non-leaf's .grad is always None (and reading it warns, which the user must not see twice)
        if not isinstance(t, torch.Tensor) or (t.is_leaf and t.grad is not None):
            continue
        fact = helpers.fact(t, [frame.f_locals])
        event = GradNoneEvent(read=where, expression=f"{expression}.grad", tensor=fact, reason="unused")
        _why(t, fact, event, helpers)
        return event
    return None


def _why(t: torch.Tensor, fact: TensorFact, event: GradNoneEvent, helpers: Helpers) -> None:
    prov = helpers.provenance
    node = prov.nodes.get(t)
    if not t.requires_grad:
        if node is not None and node.cut in ("no_grad", "inference_mode", "detach", "data") and node.pos:
            event.reason, event.cause = "rebound", helpers.location(node.pos)
        else:
            event.reason, event.cause = "no_requires_grad", fact.created
        return
    if not t.is_leaf:
        event.reason, event.cause = "non_leaf", fact.made_non_leaf or fact.created
        return
    if helpers.n_backward() == 0:
        event.reason, event.cause = "before_backward", event.read
        return
    cut = _cut_in_front(t, prov.previous_roots)
    if cut is not None:
        event.reason, event.cause, event.cut_op = "cut", helpers.location(cut.pos), cut.op
        event.cut_kind = cut.cut
        return
    if prov.uses_of(t) and prov.previous_roots and prov.previous_roots[0].pos is not None:
        # the forward did use it, but the loss leaves that output out: the loss is the line to edit
        event.reason, event.cause = "dropped", helpers.location(prov.previous_roots[0].pos)
        return
    event.reason, event.cause = "unused", fact.created


def _cut_in_front(t: torch.Tensor, roots: list[Node]) -> Node | None:
    """The first cut on the data path from the last traced loss back to ``t``, if ``t`` is in
    that loss's data ancestry behind one."""
    todo: list[tuple[Node, Node | None]] = [(n, None) for n in roots]
    seen: set[tuple[int, int]] = set()
    while todo and len(seen) < _MAX_ANCESTRY:
        node, behind = todo.pop()
        key = (id(node), id(behind))
        if key in seen:
            continue
        seen.add(key)
        if behind is not None and node.tensor is t:
            return behind
        if behind is None and node.cut is not None:
            behind = node
        todo.extend((p, behind) for p in node.parents)
    return None


_GRAD_ATTRIBUTE = re.compile(r"((?:[A-Za-z_]\w*)(?:\.[A-Za-z_]\w*|\[\s*(?:\d+|'[^']*'|\"[^\"]*\")\s*\])*)\.grad\b")


def _grad_bases(line: str) -> list[str]:
    """``p`` and ``self.w`` for ``p.grad.data.zero_(); self.w.grad * 2``."""
    return list(dict.fromkeys(m.group(1) for m in _GRAD_ATTRIBUTE.finditer(line)))


def _lookup(expression: str, frame: FrameType) -> Any:
    """Resolve ``a.b[0]`` in ``frame`` by name, attribute and literal subscript only."""
    try:
        tree = ast.parse(expression, mode="eval").body
    except SyntaxError:
        return None
    return _resolve(tree, frame)


def _resolve(node: ast.AST, frame: FrameType) -> Any:
    if isinstance(node, ast.Name):
        for space in (frame.f_locals, frame.f_globals, frame.f_builtins):
            if node.id in space:
                return space[node.id]
        return None
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, frame)
        if base is None:
            return None
        if isinstance(base, torch.nn.Module):  # parameters and submodules live in dicts
            for table in ("_parameters", "_modules", "_buffers"):
                found = base.__dict__.get(table, {}).get(node.attr)
                if found is not None:
                    return found
        return base.__dict__.get(node.attr) if hasattr(base, "__dict__") else None
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        base = _resolve(node.value, frame)
        if isinstance(base, (list, tuple, dict)):
            try:
                return base[node.slice.value]  # pyright: ignore[reportCallIssue, reportArgumentType] (a bad key raises: below)
            except (IndexError, KeyError, TypeError):
                return None
    return None


# --- an in-place op on a leaf ---------------------------------------------------------------------
_INPLACE_TARGET = re.compile(r"\s*([A-Za-z_][\w.]*)\s*(?:\[[^\]]*\])?\s*(?:[-+*/@]?=|\.\w+_\()")


def _inplace_target(line: str) -> str | None:
    """``w`` for ``w[0] *= 2`` / ``w.add_(...)`` / ``w[:, 1] = 0``."""
    match = _INPLACE_TARGET.match(line)
    return match.group(1) if match else None
