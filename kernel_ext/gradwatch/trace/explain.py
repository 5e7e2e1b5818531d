"""Facts behind PyTorch's opaque ``backward()`` errors, gathered while the graph still exists.

Recognised by their messages (stable across PyTorch 2.x): a non-scalar loss, a second backward
through a freed graph, and a tensor modified in place after autograd saved it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from types import FrameType
from typing import Any, Callable

import torch

from ..diagnostics import Location
from ..events import BackwardEvent
from ..locate import Namer, Position
from .provenance import LOSS_FUNCTIONS, PAIRWISE_LOSSES, Provenance

_INPLACE = re.compile(
    r"modified by an inplace operation: \[(?P<type>[\w.]+) \[(?P<shape>[\d, ]*)\]\](?:, which is "
    r"output (?P<output>\d+) of (?P<node>\w+),)? is at version (?P<now>\d+); expected version "
    r"(?P<expected>\d+)")


@dataclass
class Helpers:
    """What the explanation needs from the session, as plain callables."""

    provenance: Provenance
    location: Callable[[Position], Location | None]
    namer: Callable[[FrameType | None], Namer]  # names in the notebook, then in this frame
    find_assignment: Callable[[str], Location | None]  # `name = ...` in the cell history
    find_unreduced_loss: Callable[[], Location | None]
    stepped: Callable[[], list[tuple[Any, int, Position]]]  # (optimizer, key, where its traced step() ran)


def explain_error(session: Helpers, call: BackwardEvent, roots: list[torch.Tensor],
                  exc: BaseException, frame: FrameType | None) -> None:
    message = str(exc)
    namer = session.namer(frame)
    prov = session.provenance
    loss = roots[0] if roots else None
    info: dict[str, Any] = call.explain
    info["backward_location"] = call.location
    if loss is not None:
        info["loss_name"] = namer.name(loss)
        node = prov.nodes.get(loss)
        info["loss_location"] = session.location(node.pos) if node is not None else (
            session.find_assignment(info["loss_name"])
            if info["loss_name"] and info["loss_name"].isidentifier() else None)
        info["loss_shape"] = list(loss.shape)
    if "implicitly created only for scalar outputs" in message:
        info["kind"] = "non_scalar"
        if _from_loss_function(prov.nodes.get(loss) if loss is not None else None):
            info["unreduced_location"] = session.find_unreduced_loss()
    elif "backward through the graph a second time" in message:
        info["kind"] = "freed_graph"
        _carried(session, loss, namer, info)
    elif "modified by an inplace operation" in message:
        info["kind"] = "inplace"
        match = _INPLACE.search(message)
        if match:
            _inplace(session, match, namer, info)
    elif "does not require grad and does not have a grad_fn" in message:
        info["kind"] = "no_grad_fn"
        leaf = _constant_source(prov.nodes.get(loss) if loss is not None else None)
        t = leaf.tensor if leaf is not None else None
        name = namer.name(t) if t is not None else None
        if leaf is not None and leaf.pos is not None:
            info["constant_location"] = session.location(leaf.pos)
        elif name and name.isidentifier():  # made in an earlier, unwatched cell
            info["constant_location"] = session.find_assignment(name)
        if info.get("constant_location") is not None:
            info["constant_name"] = name or _assigned_name(info["constant_location"])


_WEIGHT_SECOND = {"matmul", "mm", "bmm", "__matmul__", "linear", "conv1d", "conv2d", "conv3d", "einsum"}


def _constant_source(node: Any) -> Any:
    """For a loss that requires no grad at all: the tensor the user most likely meant to train.
    Follow the prediction (a loss function's first input) and, through a product with weights
    (``x @ w``, ``linear``), the weight, to the tensor that was created without history."""
    seen = 0
    while node is not None and node.parents and seen < 10_000:
        seen += 1
        parents = node.parents
        if node.op in _WEIGHT_SECOND and len(parents) > 1 and not parents[1].parents:
            return parents[1]
        node = parents[0]
    return node




def _from_loss_function(node: Any, hops: int = 6) -> bool:
    """Whether a (non-scalar) loss comes from a loss function a few ops up (weighting, masking)."""
    todo = [(node, 0)] if node is not None else []
    while todo:
        n, depth = todo.pop()
        if n.op in LOSS_FUNCTIONS or n.op in PAIRWISE_LOSSES:
            return True
        if depth < hops:
            todo.extend((p, depth + 1) for p in n.parents)
    return False


def _carried(session: Helpers, loss: torch.Tensor | None, namer: Any, info: dict) -> None:
    """The tensor whose graph the previous ``backward()`` freed and this loss still uses: the
    nearest ancestor of this loss that the previous traced loss was also computed from."""
    prov = session.provenance
    node = prov.nodes.get(loss) if loss is not None else None
    if node is None:
        return
    previous = _ancestors(prov.previous_roots)
    # outputs of one call share its parents tuple: an RNN's new hidden state is a sibling of
    # the output the previous loss used
    previous_calls = {id(n.parents) for n in previous if n.parents}
    previous_ids = {id(n) for n in previous}
    info["same_iteration"] = node.step < prov.step  # the loss itself predates that backward
    todo, seen = [node], set()
    while todo and len(seen) < 100_000:
        n = todo.pop(0)
        if id(n) in seen:
            continue
        seen.add(id(n))
        if (id(n) in previous_ids or id(n.parents) in previous_calls) and n.requires_grad and n.parents \
                and n.cut is None and n.step < prov.step:
            t = n.tensor
            loc = info["carried_location"] = session.location(n.pos)
            info["carried_name"] = (namer.name(t) if t is not None else None) or _assigned_name(loc, n.output)
            name, here = info["carried_name"], info.get("backward_location")
            if name and name.isidentifier() and here is not None and (loc is None or loc.cell != here.cell):
                # made inside a model's forward, carried by the loop that calls backward(): the
                # loop's assignment (`out, hidden = rnn(x, hidden)`) is the line to edit
                carried = session.find_assignment(name)
                if carried is not None and carried.cell == here.cell:
                    info["carried_location"] = carried
            return
        todo.extend(n.parents)
    # nothing traced links the two graphs: a tensor with history that the traced cell did not
    # make (`dataset = encoder(raw)` in an earlier, unwatched cell) is the one carried
    for n in seen_nodes(node):
        t = n.tensor
        if n.op == "<external>" and t is not None and t.requires_grad and not t.is_leaf:
            name = namer.name(t)
            if name and name.isidentifier():
                info["carried_name"] = name
                info["carried_location"] = session.find_assignment(name)
                return


def seen_nodes(node: Any, limit: int = 100_000) -> list:
    """``node`` and its provenance ancestors, nearest first."""
    out, seen, todo = [], set(), [node]
    while todo and len(seen) < limit:
        n = todo.pop(0)
        if id(n) not in seen:
            seen.add(id(n))
            out.append(n)
            todo.extend(n.parents)
    return out


def _ancestors(roots: list) -> list:
    seen: dict[int, Any] = {}
    todo = list(roots)
    while todo and len(seen) < 100_000:
        n = todo.pop()
        if id(n) not in seen:
            seen[id(n)] = n
            todo.extend(n.parents)
    return list(seen.values())


def _inplace(session: Helpers, match: re.Match, namer: Any, info: dict) -> None:
    prov = session.provenance
    shape = tuple(int(x) for x in match["shape"].replace(" ", "").split(",") if x)
    now, expected = int(match["now"]), int(match["expected"])
    info.update(shape=list(shape), version=now, expected_version=expected,
                saved_by=match["node"])
    if not any(e.shape == shape and expected < e.version <= now for e in prov.inplace):
        _stepped(session, shape, now, namer, info)
    for event in reversed(prov.inplace):
        if event.shape != shape or not expected < event.version <= now:
            continue
        t = event.ref()
        info["inplace_op"] = event.op
        loc = info["inplace_location"] = session.location(event.pos)
        info["tensor_name"] = (namer.name(t) if t is not None else None) or _modified_name(loc)
        for use_op, use_pos, use_version in reversed(event.uses):
            if use_version == expected:
                info["saved_op"] = use_op
                info["saved_location"] = session.location(use_pos)
                break
        else:
            node = event.creator
            if node is not None and node.op.endswith("_") and node.parents:
                node = node.parents[0]  # the op that made the tensor, before an in-place one
            if node is not None and match["node"]:
                info["saved_op"] = node.op
                info["saved_location"] = session.location(node.pos)
        return


def _stepped(session: Helpers, shape: tuple, now: int, namer: Any, info: dict) -> None:
    """No recorded op wrote the tensor: an optimizer's step() did (a GAN's D step between the
    forward and the backward of a loss that goes through D)."""
    candidates = []
    positions = {}
    for opt, key, position in session.stepped():
        positions[key] = position
        for group in opt.param_groups:
            for p in group["params"]:
                # the saved tensor may be a view of the parameter (`weight.t()`): same elements
                if p._version == now and p.numel() == math.prod(shape):
                    fit = 0 if tuple(p.shape) == shape else 1 if tuple(p.shape) == shape[::-1] else 2
                    candidates.append((fit, key, opt, p))
    if candidates:
        _, key, opt, p = min(candidates, key=lambda c: c[0])
        loc = info["inplace_location"] = session.location(positions[key])
        info["tensor_name"] = namer.name(p)
        info["inplace_op"] = "step"
        info["stepped_by"] = namer.name(opt) or (loc.text if loc is not None else None)


def _modified_name(loc: Any) -> str | None:
    """``out`` for ``out[:, 0] = 0.0``, ``h`` for ``h += 1`` or ``h.relu_()``."""
    match = re.match(r"\s*([A-Za-z_]\w*)\s*(\[|[-+*/@]?=|\.\w+_\()", loc.text) if loc is not None else None
    return match.group(1) if match else None


def _assigned_name(loc: Any, output: int = 0) -> str | None:
    """``hidden`` for a location on the line ``hidden = torch.tanh(...)`` (or, for the second
    output of a call, on ``out, hidden = self.rnn(x, hidden)``)."""
    match = re.match(r"\s*([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*,?\s*=[^=]", loc.source) if loc is not None else None
    if not match:
        return None
    names = [n.strip() for n in match.group(1).split(",")]
    return names[output] if output < len(names) else None
