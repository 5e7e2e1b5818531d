"""Reentrant activation checkpointing, seen from the ops inside it.

``torch.utils.checkpoint.checkpoint(fn, *inputs, use_reentrant=True)`` runs ``fn`` under
``no_grad`` and records one autograd node for the whole call, which recomputes ``fn`` with
gradients during ``backward()``. That node exists only when one of the tensor *inputs* requires
grad: otherwise the output carries no graph and the parameters inside ``fn`` get no gradient
(PyTorch only warns "None of the inputs have requires_grad=True"). So an op that runs without
gradient tracking inside such a call is a cut exactly when no input requires grad, and the line
to edit is the user's ``checkpoint(...)`` call, not the op and not a ``with`` block.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import torch
from torch.utils import checkpoint as _checkpoint

_REENTRANT_FORWARD = _checkpoint.CheckpointFunction.forward.__code__
_MAX_DEPTH = 256


def reentrant_checkpoint() -> tuple[bool, frozenset[tuple[int, int]]] | None:
    """When the current op runs inside a reentrant checkpoint: (whether one of the checkpoint's
    tensor inputs requires grad, the frames that called ``checkpoint(...)`` as (id of the code,
    instruction)); None outside one."""
    frame = sys._getframe(1)
    depth = 0
    while frame is not None and frame.f_code is not _REENTRANT_FORWARD:
        frame = frame.f_back
        depth += 1
        if depth > _MAX_DEPTH:
            return None
    if frame is None:
        return None
    inputs = frame.f_locals.get("args", ())
    grad_in = any(isinstance(a, torch.Tensor) and a.requires_grad for a in inputs)
    above: set[tuple[int, int]] = set()
    caller = frame.f_back
    while caller is not None and len(above) < _MAX_DEPTH:
        above.add((id(caller.f_code), caller.f_lasti))
        caller = caller.f_back
    return grad_in, frozenset(above)


def checkpoint_call(callers: Callable[[], tuple[Any, ...]]) -> tuple[bool, tuple[Any, ...]] | None:
    """For an op run without gradient tracking: None when that is not a reentrant checkpoint's
    doing; else (whether the checkpoint records a graph anyway, the user's frame that called
    ``checkpoint(...)`` as a one-element tuple of positions, empty when not found)."""
    found = reentrant_checkpoint()
    if found is None:
        return None
    grad_in, above = found
    if grad_in:
        return True, ()
    for position in callers():  # the user's frames, innermost first: the first one above the call
        code, lasti = position
        if (id(code), lasti) in above:
            return False, (position,)
    return False, ()


def checkpointed_parameters(fn: Any) -> list[torch.Tensor]:
    """The trainable parameters a reentrant checkpoint's backward node recomputes through (its
    ``run_function`` when that is a module or a module's method): autograd reaches them only
    when that node runs, so a walk of ``next_functions`` does not see them."""
    run = getattr(fn, "run_function", None)
    module = run if isinstance(run, torch.nn.Module) else getattr(run, "__self__", None)
    if not isinstance(module, torch.nn.Module):
        return []
    return [p for p in module.parameters() if p.requires_grad]
