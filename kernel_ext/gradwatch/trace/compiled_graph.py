"""What the graph dynamo made of a compiled module says about its outputs.

A compiled call is one opaque step for provenance, so the facts that the flow analysis and the
loss checks read from an eager forward are taken from the FX graph instead, once per compile:

- the ``.detach()`` calls (with the user's source line) and the graph inputs (parameters, the
  module's inputs) that they keep from every output: those receive no gradient, although
  autograd's graph still lists them as inputs of the compiled function's backward;
- for each output, the op that made it when that op matters to a loss (``softmax``,
  ``log_softmax``, ``sigmoid``), with the line to edit: where the ``nn.Softmax`` module was
  built, or the user's call in ``forward``.

`record_call` then gives a traced call's outputs provenance nodes that carry these facts.
"""

from __future__ import annotations

import dis
import re
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

import torch

from ..locate import Position
from .provenance import Node, new_node

# the ops a loss check judges its input's producer by (GW109, GW110)
_PRODUCERS = {"softmax", "log_softmax", "sigmoid"}
_MODULE_OPS = {"Softmax": "softmax", "LogSoftmax": "log_softmax", "Sigmoid": "sigmoid"}
_FRAME = re.compile(r'File "(.+)", line (\d+), in ')
_ROOT = re.compile(r"^L\['self'\]\.?")
_Producer = tuple[str, str | None, tuple[str, int] | None, int | None]  # (see GraphFacts.producers)


class CompiledCut(Node):
    """A ``.detach()`` inside a compiled module. Autograd's graph does not show it: the
    compiled function's backward takes every parameter as an input and returns no gradient
    for the ones behind it, so the flow analysis believes this node over autograd's graph."""

    __slots__ = ()


@dataclass
class GraphFacts:
    """One graph, without references to it or to its tensors."""

    cuts: list[tuple[str, int]] = field(default_factory=list)  # (file, line) of its `.detach()` calls
    cut_off: set[int] = field(default_factory=set)  # ids of inputs its cuts keep from every output
    # per output: (op, submodule path or None, (file, line) of the user's frame, width of its call)
    producers: list[_Producer | None] = field(default_factory=list)


@dataclass
class ModuleFacts:
    """A compiled module's graph facts, resolved to code positions in its source."""

    cut: Position | None
    cut_off: set[int]
    producers: list[tuple[str, Position] | None]


def read_graph(gm: Any) -> GraphFacts:
    facts = GraphFacts()
    for node in gm.graph.nodes:
        if _is_detach(node):
            frame = _user_frame(node)
            if frame is not None:
                facts.cuts.append(frame)
        elif node.op == "output":
            outputs = node.args[0] if node.args and isinstance(node.args[0], (tuple, list)) else ()
            facts.producers = [_producer(o) for o in outputs]
    if facts.cuts:
        facts.cut_off = _cut_off(gm)
    return facts


def module_facts(module: Any, graphs: list[GraphFacts]) -> ModuleFacts | None:
    """The facts of the graphs compiled for one call of ``module``; the outputs' producers come
    from the last graph (the one that returns)."""
    root = getattr(module, "_orig_mod", module)
    cuts = _positions(root, [cut for g in graphs for cut in g.cuts])
    cut_off: set[int] = set().union(*(g.cut_off for g in graphs))
    producers = [_producer_position(root, p) if p is not None else None for p in graphs[-1].producers]
    if not (cuts and cut_off) and not any(producers):
        return None
    return ModuleFacts(cuts[0] if cuts and cut_off else None, cut_off if cuts else set(), producers)


def record_call(prov: Any, module: Any, args: tuple, kwargs: dict, out: Any, facts: ModuleFacts) -> None:
    """The outputs' nodes: the module's parameters and inputs as parents, those that the graph's
    cuts keep from every output behind a `CompiledCut` at the ``.detach()``, and the op that
    made each output when a loss check judges it."""
    inputs = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    kept: list[Node] = []
    cut: list[Node] = []
    for t in (*inputs, *module.parameters()):
        (cut if id(t) in facts.cut_off else kept).append(prov.node_of(t))
    outputs = [out] if isinstance(out, torch.Tensor) else \
        [t for t in out if isinstance(t, torch.Tensor)] if isinstance(out, (list, tuple)) else []
    producers = facts.producers if len(facts.producers) == len(outputs) else [None] * len(outputs)
    for t, producer in zip(outputs, producers, strict=True):
        if not cut and producer is None:
            continue
        parents = tuple(kept)
        if cut:
            if not kept and producer is None:
                prov.nodes.add(new_node("detach", facts.cut, tuple(cut), t, "detach", prov.step, prov.nodes.drop,
                                        CompiledCut))
                continue
            parents += (new_node("detach", facts.cut, tuple(cut), None, "detach", prov.step, None, CompiledCut),)
        op, pos = producer if producer is not None else (type(module).__name__, None)
        prov.nodes.add(new_node(op, pos, parents, t, None, prov.step, prov.nodes.drop))


def _is_detach(node: Any) -> bool:
    return node.op in ("call_method", "call_function") and _target_name(node) == "detach"


def _target_name(node: Any) -> str:
    return node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")


def _user_frame(node: Any) -> tuple[str, int] | None:
    """(file, line) of the innermost frame of the node's stack trace (dynamo keeps the user's)."""
    frames = _FRAME.findall(node.meta.get("stack_trace") or "")
    return (frames[-1][0], int(frames[-1][1])) if frames else None


def _producer(node: Any) -> _Producer | None:
    if getattr(node, "op", None) not in ("call_function", "call_method", "call_module"):
        return None
    op = _target_name(node)
    if op not in _PRODUCERS:
        return None
    stack = node.meta.get("nn_module_stack") or {}
    path, cls = list(stack.values())[-1] if stack else (None, None)
    # made by an `nn.Softmax`-like module: the line to edit is where it was built
    module_path = _ROOT.sub("", path) if isinstance(path, str) and _MODULE_OPS.get(getattr(cls, "__name__", "")) == op \
        else None
    return op, module_path, _user_frame(node), _span_width(node)


def _cut_off(gm: Any) -> set[int]:
    """Ids of the graph's tensor inputs (parameters) that reach its ``.detach()`` calls and no
    output by any other path: those its cuts keep from every output."""
    live: dict[Any, frozenset[int]] = {}  # node -> inputs that reach it without a detach
    dead: set[int] = set()
    reach_out: frozenset[int] = frozenset()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            example = getattr(node.meta.get("grapharg"), "example", None)
            live[node] = frozenset((id(example),)) if isinstance(example, torch.Tensor) else frozenset()
            continue
        reaching = frozenset().union(*(live.get(n, frozenset()) for n in node.all_input_nodes))
        if node.op == "output":
            reach_out = reaching
        elif _is_detach(node):
            dead |= reaching
            live[node] = frozenset()
        else:
            live[node] = reaching
    return dead - reach_out


def _forward_codes(root: Any) -> dict[str, list[CodeType]]:
    codes: dict[str, list[CodeType]] = {}
    for sub in root.modules():
        code = getattr(type(sub).forward, "__code__", None)
        if code is not None:
            codes.setdefault(code.co_filename, []).append(code)
    return codes


def _positions(root: Any, cuts: list[tuple[str, int]]) -> list[Position]:
    """Code positions (the ``.detach()`` call's instruction) of graph cuts, in the forward
    methods of the compiled module and its submodules."""
    codes = _forward_codes(root) if cuts else {}
    out = []
    for filename, line in cuts:
        for code in codes.get(filename, ()):
            offset = _call_after(code, line, "detach")
            if offset is not None:
                out.append((code, offset))
                break
    return out


def _producer_position(root: Any, producer: _Producer) -> tuple[str, Position] | None:
    op, module_path, frame, width = producer
    if module_path:
        built = _built_at(root, module_path)
        if built is not None:
            return op, built
    if frame is not None:
        for code in _forward_codes(root).get(frame[0], ()):
            offset = _call_on_line(code, frame[1], width)
            if offset is not None:
                return op, (code, offset)
    return None


def _built_at(root: Any, path: str) -> Position | None:
    """Where the submodule at ``path`` was built: the ``nn.Softmax(...)`` call in the
    ``__init__`` that assigned it (directly, or inside an ``nn.Sequential(...)``) to an
    attribute of its owner."""
    parts = path.split(".")
    attrs = [i for i, part in enumerate(parts) if not part.isdigit()]
    if not attrs:
        return None
    owner_path, attr = ".".join(parts[:attrs[-1]]), parts[attrs[-1]]
    try:
        owner, module = root.get_submodule(owner_path), root.get_submodule(path)
    except AttributeError:
        return None
    code = getattr(type(owner).__init__, "__code__", None)
    if code is None:
        return None
    name, loaded = type(module).__name__, None
    for ins in dis.get_instructions(code):
        if ins.opname == "STORE_ATTR":
            if ins.argval == attr and loaded is not None:
                return code, loaded
            loaded = None  # a built module of this class belongs to an earlier attribute
        elif ins.argval == name and ins.opname.startswith("LOAD"):
            loaded = _call_after(code, _line(ins), name, start=ins.offset) or ins.offset
    return None


def _line(ins: dis.Instruction) -> int:
    return ins.positions.lineno if ins.positions is not None and ins.positions.lineno is not None else -1


def _call_after(code: CodeType, line: int, name: str, start: int = 0) -> int | None:
    """The offset of the call of ``name`` on ``line`` (the first CALL after its load)."""
    seen = False
    for ins in dis.get_instructions(code):
        if ins.offset < start or _line(ins) != line:
            continue
        if ins.argval == name:
            seen = True
        elif seen and ins.opname.startswith("CALL"):
            return ins.offset
    return None


def _call_on_line(code: CodeType, line: int, width: int | None) -> int | None:
    """The call on ``line`` that the stack trace underlines (as wide as its carets), else the
    line's first call."""
    calls = [ins for ins in dis.get_instructions(code) if _line(ins) == line and ins.opname.startswith("CALL")]
    for ins in calls:
        pos = ins.positions
        if width and pos is not None and pos.lineno == pos.end_lineno and pos.col_offset is not None \
                and pos.end_col_offset is not None and pos.end_col_offset - pos.col_offset == width:
            return ins.offset
    return calls[0].offset if calls else None


def _span_width(node: Any) -> int | None:
    """How many columns the stack trace's last frame underlines (``^^^`` under the call)."""
    lines = (node.meta.get("stack_trace") or "").rstrip().splitlines()
    if lines and set(lines[-1].strip()) <= {"^", "~"} and lines[-1].strip():
        return len(lines[-1].strip())
    return None
