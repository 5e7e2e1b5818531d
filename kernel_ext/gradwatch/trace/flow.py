"""At a traced ``backward()``: which trainable tensors the loss reaches, and where it doesn't, why.

Two graphs are compared. Autograd's graph (``grad_fn.next_functions``) says which leaves will
receive a gradient. The provenance graph says which tensors the loss was *computed from*. A
trainable tensor in the second but not the first lost its gradient somewhere; the provenance
node where ``requires_grad`` turned off on the way (a ``.detach()``, a ``no_grad`` block, an
``argmax``) is the cause to report.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any, Callable, Iterable

import torch

from ..diagnostics import Location
from ..events import Cut, Flow, TensorFact
from .checkpointing import checkpointed_parameters
from .compiled_graph import CompiledCut
from .provenance import CONVERSIONS, LOSS_FUNCTIONS, Node, Provenance

_MAX_NODES = 200_000
# ops through which the loss is a sum of terms (averaged, stacked) ...
_ADDITIVE = {"add", "__add__", "__radd__", "__iadd__", "add_", "sub", "__sub__", "__rsub__", "__isub__",
             "mean", "sum", "neg", "__neg__", "stack", "cat"}
# ... or scaled by a number (`0.1 * reg`); a product of two tensors is one term (`-log_prob * R`)
_SCALING = {"div", "__truediv__", "__itruediv__", "mul", "__mul__", "__rmul__", "__imul__"}
_MAX_TERMS = 16


def autograd_leaves(roots: Iterable[torch.Tensor]) -> dict[int, torch.Tensor]:
    """The leaf tensors (by id) that a backward from ``roots`` accumulates into."""
    leaves: dict[int, torch.Tensor] = {}
    todo: deque[Any] = deque()
    # the nodes met, kept alive for the walk: a node's Python object may be made anew each
    # time it is asked for, and a freed one's id taken by the next
    seen: dict[int, Any] = {}
    for r in roots:
        fn = r.grad_fn
        if fn is not None and id(fn) not in seen:
            seen[id(fn)] = fn
            todo.append(fn)
        elif fn is None and r.requires_grad:
            leaves[id(r)] = r
    kinds = _NODE_KINDS
    while todo and len(seen) < _MAX_NODES:
        fn = todo.popleft()
        kind = kinds.get(type(fn))
        if kind is None:
            kind = _node_kind(fn)
        if kind == _LEAF:
            variable = fn.variable
            leaves[id(variable)] = variable
            continue
        if kind == _PYTHON:  # reached when a reentrant checkpoint recomputes
            for p in checkpointed_parameters(fn):
                leaves[id(p)] = p
        for nxt, _ in fn.next_functions:
            if nxt is None or id(nxt) in seen:
                continue
            seen[id(nxt)] = nxt
            if kinds.get(type(nxt)) == _LEAF:  # (an AccumulateGrad, once its type is known: taken
                variable = nxt.variable  # as met, in the order met, not queued: half the graph's nodes)
                leaves[id(variable)] = variable
            else:
                todo.append(nxt)
    return leaves


# what a kind of autograd node is, learnt once per type of torch's own (C++) nodes: the walk
# visits every node of the graph
_LEAF, _PYTHON, _OTHER = 0, 1, 2
_NODE_KINDS: dict[type, int] = {}


def _node_kind(fn: Any) -> int:
    if isinstance(fn, torch.autograd.function.BackwardCFunction):
        # a custom Function's node (a reentrant checkpoint is one): its type is made from the
        # user's Function class, so it is not kept (asked again each time, at C speed)
        return _PYTHON
    if isinstance(getattr(fn, "variable", None), torch.Tensor):
        kind = _LEAF  # AccumulateGrad
    else:
        kind = _OTHER
    if (kind == _LEAF or not hasattr(fn, "variable")) and len(_NODE_KINDS) < 4096:
        _NODE_KINDS[type(fn)] = kind  # (a type whose nodes all look alike)
    return kind


def _ancestry(start: Iterable[Node]) -> tuple[dict[int, Node | None], list[Node]]:
    """Walk provenance parents from ``start``.

    Returns, for each reached node id, the first cut node met on the way there (None when the
    path was clean), and the list of all reached nodes. Each node is entered at most twice:
    once on a clean path and once behind a cut.
    """
    state: dict[int, Node | None] = {}
    order: list[Node] = []
    # (two queues side by side, not one of pairs: no object per step of the walk, which a
    # graph of 15,000 nodes made enough of to bring on a full garbage collection)
    todo: deque[Node] = deque(start)
    behinds: deque[Node | None] = deque(None for _ in todo)
    pop, push, pop_behind, push_behind, entered = todo.popleft, todo.append, behinds.popleft, behinds.append, state.get
    while todo and len(order) < _MAX_NODES:
        node, behind = pop(), pop_behind()
        key = id(node)
        was = entered(key, _ABSENT)
        if was is not _ABSENT:
            if was is None or behind is not None:
                continue
        else:
            order.append(node)
        state[key] = behind
        nxt = behind
        if behind is None and node.cut is not None:
            nxt = node
        for parent in node.parents:
            # (not queued when it would be skipped: a parameter shared by many ops is met once)
            was = entered(id(parent), _ABSENT)
            if was is None or (was is not _ABSENT and nxt is not None):
                continue
            push(parent)
            push_behind(nxt)
    return state, order


_ABSENT: Any = object()




class BackwardGraph:
    """One traced backward's two graphs, each walked at most once however many analyses ask
    (the optimizers it feeds, the flow, the data): the autograd leaves it accumulates into, and
    the provenance ancestry of its roots. Made per backward() and dropped after it."""

    def __init__(self, roots: list[torch.Tensor], prov: Provenance) -> None:
        self.roots = roots
        self.prov = prov
        self._leaves: dict[int, torch.Tensor] | None = None
        self._ancestry: tuple[dict[int, Node | None], list[Node]] | None = None
        self.walks = 0  # graph walks done (what the scaling tests count)

    def leaves(self) -> dict[int, torch.Tensor]:
        if self._leaves is None:
            self.walks += 1
            self._leaves = autograd_leaves(self.roots)
        return self._leaves

    def ancestry(self) -> tuple[dict[int, Node | None], list[Node]]:
        if self._ancestry is None:
            self.walks += 1
            nodes = self.prov.nodes
            self._ancestry = _ancestry(n for n in (nodes.get(r) for r in self.roots) if n is not None)
        return self._ancestry


def data_leaves(roots: list[torch.Tensor], prov: Provenance, limit: int = 8,
                graph: BackwardGraph | None = None) -> list[tuple[torch.Tensor, Node, bool]]:
    """The data a loss was computed from: float tensors without history that nothing trains,
    each with whether it is a target (a loss function's second input) rather than an input."""
    _, order = (graph or BackwardGraph(roots, prov)).ancestry()
    targets: set[int] = set()
    for node in order:
        if node.op in LOSS_FUNCTIONS:
            for target in node.parents[1:]:
                while len(target.parents) == 1:  # `y.view(-1, 1)`, `y.float()`
                    target = target.parents[0]
                targets.add(id(target))
    out = []
    for node in order:
        if node.parents:  # (made by an op: no data; most nodes, asked first)
            continue
        t = node.tensor
        if t is None or t.requires_grad or isinstance(t, torch.nn.Parameter) \
                or not t.is_floating_point() or t.numel() < 2:
            continue
        out.append((t, node, id(node) in targets))
        if len(out) >= limit:
            break
    return out


def related_tensor_ids(roots: list[torch.Tensor], prov: Provenance,
                       graph: BackwardGraph | None = None) -> set[int]:
    """ids of the tensors a loss depends on, by autograd or by recorded data flow."""
    graph = graph or BackwardGraph(roots, prov)
    ids = set(graph.leaves())
    _, order = graph.ancestry()
    for node in order:
        t = node()  # (node.tensor, inline: every node of the graph; a node is its weak reference)
        if t is not None:
            ids.add(id(t))
    return ids


class FlowAnalyzer:
    """Builds a `Flow` for one backward call from live tensors; keeps nothing afterwards."""

    def __init__(self, provenance: Provenance, location: Callable[[Any], Location | None],
                 fact: Callable[[torch.Tensor], TensorFact], name: Callable[[Any], str | None],
                 enclosing_with: Callable[[Location], Location | None],
                 enclosing_decorator: Callable[[Location], Location | None] = lambda _: None,
                 owner_keys: Callable[[torch.Tensor], list[int]] | None = None,
                 bound_name: Callable[[Any], str | None] | None = None) -> None:
        self.prov = provenance
        self.location = location
        self.fact = fact
        # the keys of the optimizers that hold a tensor (without naming it, as a fact would)
        self.owner_keys = owner_keys or (lambda t: fact(t).owner_keys)
        self.name = name
        # the loss's name when a variable holds it, without reading what the models hold
        self.bound_name = bound_name or name
        self.enclosing_with = enclosing_with
        self.enclosing_decorator = enclosing_decorator
        self.reached_ids: set[int] = set()  # after analyze(): the leaves autograd reaches
        # after analyze(): the trainables it reaches, whose names make `Flow.reached` (the caller
        # names them: a clean flow's 10,000 need names only when another finding is compared)
        self.reached_trainables: list[torch.Tensor] = []

    def analyze(self, roots: list[torch.Tensor], trainables: list[torch.Tensor],
                has_optimizer: bool, owned: set[int], graph: BackwardGraph | None = None) -> Flow:
        """The flow of a backward from ``roots``; `Flow.reached` is left to the caller, from
        `reached_trainables`."""
        loss = roots[0]
        loss_node = self.prov.nodes.get(loss)
        flow = Flow(loss_name=self.bound_name(loss))
        graph = graph or BackwardGraph(roots, self.prov)
        reached = graph.leaves()
        self.reached_ids = set(reached)
        by_id = {id(t): t for t in trainables}
        state, order = graph.ancestry()

        # Where does each trainable tensor sit in the loss's data ancestry?
        behind: dict[int, Node | None] = {}
        for node in order:
            t = node()  # (node.tensor, inline: every node of the graph; a node is its weak reference)
            if t is not None and by_id.get(id(t)) is t:
                prev = behind.get(id(t), "absent")
                cut = state[id(node)]
                if prev == "absent" or (prev is not None and cut is None):
                    behind[id(t)] = cut

        escapes = self._escapes_into(order, by_id)

        cut_off: dict[int, tuple[Node | Any, list[str]]] = {}
        reached_trainables: list[torch.Tensor] = []
        for t in trainables:
            if id(t) in reached and isinstance(behind.get(id(t)), CompiledCut):
                # a compiled module's backward lists it but returns no gradient for it
                self.reached_ids.discard(id(t))
            elif id(t) in reached:
                cut_node = behind.get(id(t))
                if isinstance(cut_node, Node) and cut_node.cut == "zero_grad":
                    # reached, but only through ops whose gradient is zero (round, sign ...)
                    cut_off.setdefault(id(cut_node), (cut_node, []))[1].append(self.name(t) or "<tensor>")
                else:
                    reached_trainables.append(t)
                continue
            name = self.name(t) or "<tensor>"
            fact = self.fact(t)
            flow.unreached.append(fact)
            if id(t) in behind and (behind[id(t)] is None or not t.requires_grad):
                flow.direct.append(name)  # no cut to blame (a tensor without requires_grad)
            elif id(t) in behind:
                cut_node = behind[id(t)]
                cut_off.setdefault(id(cut_node), (cut_node, []))[1].append(name)
            elif id(t) in escapes:
                esc = escapes[id(t)]
                cut_off.setdefault(id(esc), (esc, []))[1].append(name)
        self.reached_trainables = reached_trainables
        for cut_node, names in cut_off.values():
            flow.cuts.append(self._cut(cut_node, names))
        if loss_node is not None and any(id(t) in reached for t in trainables):
            flow.cuts += self._dead_terms(loss_node, by_id)

        if has_optimizer:
            for t_id, t in reached.items():
                if t_id in owned or any(t is r for r in roots):  # the loss itself, made a leaf
                    continue
                if not isinstance(t, torch.nn.Parameter) and self.name(t) is None:
                    continue  # an anonymous helper tensor, not something the user trains
                flow.reached_unowned.append(self.fact(t))
        return flow

    def _dead_terms(self, loss_node: Node, by_id: dict[int, torch.Tensor]) -> list[Cut]:
        """Cuts that make a whole term of the loss a constant, while the loss itself still
        trains something (so no trainable is unreached): ``loss = task + 0.1 * reg(w.detach())``,
        ``torch.tensor(balance_losses).mean()``, a NumPy round trip re-wrapped as a fresh leaf."""
        cuts: list[Cut] = []
        additive: list[Node] = []
        terms = _terms(loss_node, additive)
        for node, esc in self.prov.number_operands:  # a number from `.item()` added to the loss
            if esc.step != self.prov.step:
                continue
            if any(node is a for a in additive):
                _, upstream = _ancestry([esc.node])
                names = [self.name(t) or "<tensor>" for n in upstream
                         for t in [n.tensor] if t is not None and by_id.get(id(t)) is t]
                if names:
                    cuts.append(replace(self._cut(esc, names), context=None, dead_term=self.location(esc.pos)))
        for term in terms:
            # the trainables the term reaches with no cut on the way, and those only behind one
            # (the term's own tensor is usually gone by now; its records are not)
            state, order = _ancestry([term])
            clean: dict[int, torch.Tensor] = {}
            behind: dict[int, tuple[Any, list[torch.Tensor]]] = {}
            for node in order:
                tt = node.tensor
                if tt is None or by_id.get(id(tt)) is not tt:
                    continue
                cut = state[id(node)]
                if cut is None:
                    clean[id(tt)] = tt
                else:
                    behind.setdefault(id(cut), (cut, []))[1].append(tt)
            where = self.location(term.pos)
            if not clean:  # the whole term is a constant
                for t_id, esc in self._escapes_into(order, by_id).items():
                    behind.setdefault(id(esc), (esc, []))[1].append(by_id[t_id])
            # a term that trains some tensors and cuts others off: which optimizers the trained
            # ones belong to decides whether the cut is a stop-gradient (see GW002); looked up
            # only for a cut (a clean loss over 1,000 optimizers' tensors has none)
            owners: frozenset[int] | None = None
            for cut_node, tensors in behind.values():
                names = [self.name(t) or "<tensor>" for t in tensors if id(t) not in clean]
                if names:
                    if owners is None and clean:
                        owners = frozenset(k for t in clean.values() for k in self.owner_keys(t))
                    cuts.append(replace(self._cut(cut_node, names), dead_term=where, term_trains=owners))
        return cuts

    def _escapes_into(self, order: list[Node], by_id: dict[int, torch.Tensor]) -> dict[int, Any]:
        """Trainables whose values left autograd (``.item()``/``.numpy()``) and came back
        into the loss through a re-wrap (``torch.tensor(...)``), or that were converted to
        Python numbers themselves (``torch.Tensor([p for p in params])``)."""
        escapes = [e for e in self.prov.escapes if e.step == self.prov.step]
        if not escapes:
            return {}
        found: dict[int, Any] = {}
        by_value = {id(e) for e in escapes if any(e.value_ids & ids for _, ids in self.prov.rewraps)}
        # escapes whose values are seen coming back first; then the latest one before the re-wrap
        # (`loss -= log_prob.item() * r` after sampling with `.item()`)
        escapes = [e for e in escapes if id(e) in by_value] + [e for e in reversed(escapes) if id(e) not in by_value]
        for esc in escapes:
            t = esc.node.tensor
            if esc.op in CONVERSIONS and t is not None and by_id.get(id(t)) is t:
                found.setdefault(id(t), esc)
        in_loss = {id(n) for n in order}
        rewraps = [(n, ids) for n, ids in self.prov.rewraps if id(n) in in_loss]
        if not rewraps:
            return found
        for esc in escapes:
            linked = [n for n, ids in rewraps if esc.value_ids & ids] or \
                     [n for n, _ in rewraps if n.step == esc.step]
            if not linked:
                continue
            esc.rewrap = linked[0]
            _, upstream = _ancestry([esc.node])
            for node in upstream:
                t = node.tensor
                if t is not None and id(t) in by_id and by_id[id(t)] is t:
                    found.setdefault(id(t), esc)
        return found

    def _cut(self, node: Any, names: list[str]) -> Cut:
        if isinstance(node, Node):
            loc = self.location(node.pos)
            context = scope = None
            if node.cut in ("no_grad", "inference_mode") and loc is not None:
                context, scope = self._no_grad_scope(node, loc)
            elif node.cut == "checkpoint":  # the line to edit is the user's `checkpoint(...)` call
                scope = self.location(node.callers[0]) if node.callers else None
            parent = node.parents[0] if node.parents else None
            input_text = None
            if parent is not None and node.op in ("detach", ".data") and loc is not None:
                input_text = _strip_suffix(loc.text, "." + node.op.lstrip("."))
            return Cut(kind=node.cut or "nondiff", op=node.op, location=loc, context=context,
                       cut_off=list(dict.fromkeys(names)), input_text=input_text, scope=scope)
        return Cut(kind="escape", op=node.op, location=self.location(node.pos),
                   context=self.location(node.rewrap.pos) if node.rewrap is not None else None,
                   cut_off=list(dict.fromkeys(names)))


    def _no_grad_scope(self, node: Node, loc: Location) -> tuple[Location | None, Location | None]:
        """(the block or decorator that turned gradients off, the line to edit), searched from
        the op outwards through its callers: a `with` header is itself the line to edit; in a
        `@torch.no_grad()` function it is the call that runs the forward."""
        frames = [loc] + [c for c in map(self.location, node.callers[1:]) if c is not None]
        for frame_loc in frames:
            block = self.enclosing_with(frame_loc)
            if block is not None:
                return block, block
            decorator = self.enclosing_decorator(frame_loc)
            if decorator is not None:
                return decorator, frame_loc
        return None, None


def _terms(root: Node, additive: list[Node] | None = None) -> list[Node]:
    """The additive terms of a loss: what ``+``/``-``/scaling/``mean`` combine (and, into
    ``additive``, the nodes that combine them)."""
    terms: list[Node] = []
    todo, seen = [root], set()
    while todo and len(terms) < _MAX_TERMS and len(seen) < 4 * _MAX_TERMS:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.parents and node.cut is None and (
                node.op in _ADDITIVE or (node.op in _SCALING and len(node.parents) == 1)):
            todo.extend(node.parents)
            if additive is not None:
                additive.append(node)
        elif node is not root:
            terms.append(node)
    return terms


def _strip_suffix(text: str, suffix: str) -> str | None:
    for tail in (suffix + "()", suffix):
        if text.endswith(tail):
            return text[: -len(tail)]
    return None
