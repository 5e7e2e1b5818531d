"""Tensor provenance: which op, at which source range, made each tensor of the cell.

A private ``TorchFunctionMode`` sees every torch call. For each tensor it produces it keeps a
small ``Node`` (op name, code position, parent nodes, whether it carries gradient) in a
weak `TensorMap`, so records die with their tensors. This is the expensive part of
gradwatch (a Python call per op), so the session runs it only for the first iterations of a
training loop and around detected problems, then takes the mode off the stack.
"""

from __future__ import annotations

import os
import sys
import types
import weakref
from types import CodeType, FrameType
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode

from ..locate import Position
from .checkpointing import checkpoint_call
from .grad_probe import PLAIN_TENSORS, passes_no_gradient

# Ops whose output carries no gradient even though an input does.
_DETACH_OPS = {"detach", "detach_"}
_ESCAPE_OPS = {"numpy", "item", "tolist", "__float__", "__int__", "__index__"}
# a tensor turned into a Python number by a conversion (`torch.Tensor([p for p in params])`,
# `float(w)`): the value is copied out of autograd even when no re-wrap is seen
CONVERSIONS = {"__float__", "__int__", "__index__"}
_REWRAP_OPS = {"tensor", "as_tensor", "from_numpy", "Tensor", "FloatTensor", "DoubleTensor",
               "asarray"}
# Loss functions whose second input is the target, and those that compare two inputs.
LOSS_FUNCTIONS = {"mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "cross_entropy", "nll_loss",
                  "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div"}
PAIRWISE_LOSSES = {"poisson_nll_loss", "margin_ranking_loss", "hinge_embedding_loss", "soft_margin_loss",
                   "cosine_embedding_loss"}
# Ops through which a Python number can be a term of the loss.
_NUMBER_OPERAND_OPS = {"add", "__add__", "__radd__", "__iadd__", "sub", "__sub__", "__rsub__", "__isub__"}
_GETSET = type(torch.Tensor.data)


class _KeyRef(weakref.ref):
    """A weak reference to a tensor that carries its entry: the tensor's id (to drop the entry
    when the tensor dies) and the value stored for it."""

    __slots__ = ("key", "value")


class _IdentityMap:
    """Tensor -> entry, weak in the tensor, keyed by identity: each entry is a weak reference to
    its tensor that carries its ``key`` (the tensor's id), found by ``id`` and checked against
    the reference, and dropped by the reference's callback (``drop``) when its tensor dies,
    before the id can be reused."""

    __slots__ = ("by_id", "drop")

    def __init__(self) -> None:
        data: dict[int, Any] = {}
        # id -> the entry; read directly (no call) on the tracing hot path
        self.by_id = data

        def drop(ref: Any, data: dict[int, Any] = data) -> None:
            if data.get(ref.key) is ref:
                del data[ref.key]
        self.drop = drop

    def __contains__(self, t: torch.Tensor) -> bool:
        ref = self.by_id.get(id(t))
        return ref is not None and ref() is t

    def __len__(self) -> int:
        return len(self.by_id)


class TensorMap(_IdentityMap):
    """Tensor -> value, as torch's ``WeakTensorKeyDictionary`` (keyed by identity), at a third
    of its cost per lookup: the entry's weak reference holds the value (one object per entry)."""

    __slots__ = ()

    def get(self, t: torch.Tensor, default: Any = None) -> Any:
        ref = self.by_id.get(id(t))
        return ref.value if ref is not None and ref() is t else default

    def __setitem__(self, t: torch.Tensor, value: Any) -> None:
        key = id(t)
        ref = self.by_id.get(key)
        if ref is not None and ref() is t:  # (a new value, same entry)
            ref.value = value
            return
        ref = _KeyRef(t, self.drop)
        ref.key = key
        ref.value = value
        self.by_id[key] = ref

    def pop(self, t: torch.Tensor, default: Any = None) -> Any:
        ref = self.by_id.get(id(t))
        if ref is None or ref() is not t:
            return default
        del self.by_id[id(t)]
        return ref.value


class Node(weakref.ref):
    """How one tensor came to be. ``cut`` names why gradient stops here, if it does.

    A node is itself the weak reference to its tensor (and its entry in `NodeMap`): one object
    per traced tensor, not three (node, reference, map entry), since a traced iteration of a
    model of 10,000 small layers made enough of them to bring on full garbage collections."""

    __slots__ = ("key", "op", "pos", "parents", "requires_grad", "cut", "step", "callers", "output",
                 "checked_in", "check", "uses")
    key: int
    op: str
    pos: Position | None
    parents: tuple[Node, ...]
    requires_grad: bool
    cut: str | None
    step: int
    callers: tuple[Position, ...]
    output: int
    checked_in: int
    check: int
    uses: tuple[Any, ...]  # flat: (op, position, version) of each of the last 8 reads

    # equal only to itself (a weak reference compares and hashes by its referent)
    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__

    @property
    def tensor(self) -> torch.Tensor | None:
        return self()

    def __repr__(self) -> str:
        return f"Node({self.op}, cut={self.cut}, parents={len(self.parents)})"


def new_node(op: str, pos: Position | None, parents: tuple[Node, ...], tensor: torch.Tensor | None,
             cut: str | None, step: int, drop: Callable[[Any], None] | None = None, kind: type[Node] = Node) -> Node:
    """A node for ``tensor`` (None: a node of no tensor, whose reference is dead from the start);
    ``drop``: its map's callback. (Built by torch's C constructor of weak references, then
    filled in here: one Python call per traced tensor.)"""
    node = kind(tensor if tensor is not None else _Gone(), drop)
    node.key = id(tensor)
    node.op = op
    node.pos = pos
    node.parents = parents
    node.requires_grad = tensor.requires_grad if tensor is not None else False
    node.cut = cut
    node.step = step
    # for a cut by a no-grad mode: the user's frames that called the op (innermost first),
    # to find the `with torch.no_grad():` or decorated function, which may sit up the stack
    node.callers = ()
    node.output = 0  # which output of its op (`out, hidden = rnn(x, hidden)`: hidden is 1)
    # an observer's per-iteration mark (OpChecks: the iteration and the slot of the tensor's
    # non-finite check): kept here, so that it costs no object per tensor
    node.checked_in = -1
    node.check = 0
    node.uses = ()  # the last reads while autograd recorded: op, position, version, op, ...
    return node


class _Gone:
    __slots__ = ("__weakref__",)


class NodeMap(_IdentityMap):
    """Tensor -> its `Node`, which is the entry itself (the node is its tensor's weak reference;
    its callback is the map's ``drop``)."""

    __slots__ = ()

    def get(self, t: torch.Tensor, default: Any = None) -> Any:
        node = self.by_id.get(id(t))
        return node if node is not None and node() is t else default

    def add(self, node: Node) -> None:
        """``node`` as its tensor's entry (a new one for the same tensor replaces the old: an
        in-place op's output)."""
        self.by_id[node.key] = node


class Escape:
    """A value that left autograd: ``t.item()``, ``t.numpy()``, ``t.tolist()``."""

    __slots__ = ("op", "pos", "node", "value_ids", "step", "rewrap")

    def __init__(self, op: str, pos: Position | None, node: Node, value: Any, step: int) -> None:
        self.op, self.pos, self.node, self.step = op, pos, node, step
        self.value_ids = _ids(value)
        self.rewrap: Node | None = None  # where the value came back as a tensor, if seen


def _ids(value: Any, depth: int = 0) -> frozenset[int]:
    # small ints, bools and None are shared objects: their identity links nothing
    ids = set() if value is None or isinstance(value, int) else {id(value)}
    if depth < 2 and isinstance(value, (list, tuple)):
        for v in value[:64]:
            ids |= _ids(v, depth + 1)
    return frozenset(ids)


def _tensors(values: Any, out: list[torch.Tensor], depth: int = 0, limit: int = 2) -> None:
    if isinstance(values, torch.Tensor):
        out.append(values)
    elif depth < limit and isinstance(values, (list, tuple)):
        for v in values[:4096]:
            if isinstance(v, torch.Tensor):  # (most arguments: no call per tensor)
                out.append(v)
            elif isinstance(v, (list, tuple)):
                _tensors(v, out, depth + 1, limit)


_OP_NAMES: dict[Any, str] = {}


def _op_name(func: Callable) -> str:
    """The op's name (``add``, ``.data``, ``.requires_grad=``), worked out once per function."""
    try:
        return _OP_NAMES[func]
    except (KeyError, TypeError):  # (an unhashable callable: worked out every time)
        pass
    name = _name_of(func)
    try:
        if len(_OP_NAMES) < 4096:
            _OP_NAMES[func] = name
    except TypeError:
        pass
    return name


_WRITES: dict[Any, bool] = {}
_WRITING_DUNDERS = {"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__",
                    "__imod__", "__ipow__", "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__",
                    "__imatmul__"}


def _writes(func: Callable, kwargs: dict) -> bool:
    """Whether the op writes into a tensor it is given: in place (``relu_``, ``x += y``,
    ``x[i] = v``), through ``out=``, or a setter (``.data = ...``)."""
    if kwargs and kwargs.get("out") is not None:
        return True
    try:
        return _WRITES[func]
    except (KeyError, TypeError):
        pass
    op = _op_name(func)
    writes = (op.endswith("_") and not op.endswith("__")) or op.endswith("=") or op in _WRITING_DUNDERS
    try:
        if len(_WRITES) < 4096:
            _WRITES[func] = writes
    except TypeError:
        pass
    return writes


def _name_of(func: Callable) -> str:
    if isinstance(getattr(func, "__self__", None), _GETSET):  # a property such as Tensor.data
        setter = "=" if getattr(func, "__name__", "") == "__set__" else ""
        return "." + func.__self__.__name__ + setter
    return getattr(func, "__name__", None) or repr(func)


class Inplace:
    """An in-place op on a tensor that takes part in autograd."""

    __slots__ = ("op", "pos", "ref", "version", "shape", "uses", "creator")

    def __init__(self, op, pos, ref, version, shape, uses, creator) -> None:
        self.op, self.pos, self.ref, self.version, self.shape = op, pos, ref, version, shape
        self.uses, self.creator = uses, creator


class Provenance:
    """The records of one watch session (plain data + weak maps)."""

    def __init__(self, position_from: Callable[[FrameType | None], Position | None],
                 callers: Callable[[], tuple[Position, ...]] = tuple) -> None:
        self.nodes = NodeMap()
        self._callers = callers
        self.escapes: list[Escape] = []
        self.rewraps: list[tuple[Node, frozenset[int]]] = []
        # an escaped Python number added back as an operand (`loss = l1 + adv.detach().item()`):
        # (the op's output node, the escape)
        self.number_operands: list[tuple[Node, Escape]] = []
        self.grad_reads: list[tuple[Position | None, weakref.ref]] = []
        self.inplace: list[Inplace] = []
        self.step = 0
        self.previous_roots: list[Node] = []  # the last traced backward's losses
        # storage address -> where a factory made it, and the storage (an address is reused
        # once its storage is freed: a weak reference tells the two apart)
        self.made_at: dict[int, tuple[Position, weakref.ref]] = {}
        self.frozen_at = TensorMap()  # tensor -> where requires_grad was turned off
        # where the user's code is, found from a given frame up: from the frame that called the
        # op, the walk skips the tracing mode's frames (every op)
        self._position_from = position_from
        # Extra per-op checks that run only while tracing: f(op, args, kwargs, out, position).
        self.observers: list[Callable[[str, tuple, dict, Any, Callable[[], Position | None]], None]] = []
        # Called before an op that writes into a tensor runs (in-place, `out=`, a setter), while
        # set: an observer that reads values later (in batches) reads them before they change.
        self.before_write: Callable[[], None] | None = None

    def made_position(self, t: torch.Tensor) -> Position | None:
        """Where a factory made ``t``'s storage (``nn.Parameter(torch.empty(...))``), if it was
        traced; not a freed storage's at the same address."""
        storage = t.untyped_storage()
        entry = self.made_at.get(storage.data_ptr())
        if entry is None or entry[1]() is not storage:
            return None
        return entry[0]

    def node_of(self, t: torch.Tensor) -> Node:
        node = self.nodes.get(t)
        return node if node is not None else self._external(t)

    def _external(self, t: torch.Tensor) -> Node:
        """A node for a tensor made before tracing (a parameter, the data): no op made it."""
        node = new_node("<external>", None, (), t, None, self.step, self.nodes.drop)
        self.nodes.by_id[node.key] = node  # (self.nodes.add, inline)
        return node

    def uses_of(self, t: torch.Tensor) -> tuple[tuple[str, Position | None, int], ...]:
        """The last ops that read ``t`` while autograd recorded: (op, position, version)."""
        node = self.nodes.get(t)
        if node is None:
            return ()
        uses = node.uses
        return tuple(zip(uses[0::3], uses[1::3], uses[2::3], strict=True))

    def record(self, func: Callable, args: tuple, kwargs: dict, out: Any, caller: FrameType | None) -> None:
        """``func(*args, **kwargs)`` made ``out``; ``caller``: the frame that called it."""
        try:
            op = _OP_NAMES[func]
        except (KeyError, TypeError):
            op = _op_name(func)
        found: list[Position | None] = []

        def position() -> Position | None:  # worked out once per op, when asked
            if not found:
                found.append(self._position_from(caller))
            return found[0]

        inputs: list[torch.Tensor] = []
        _tensors(args, inputs)
        if kwargs:
            _tensors(list(kwargs.values()), inputs)
        if op in _ESCAPE_OPS:
            if inputs:
                self.escapes.append(Escape(op, position(), self.node_of(inputs[0]),
                                           out, self.step))
                del self.escapes[:-64]
            return
        if op in (".requires_grad=", "requires_grad_"):
            value = args[1] if len(args) > 1 else kwargs.get("requires_grad", True)
            if inputs and value is False:
                self.frozen_at[inputs[0]] = position()
            elif inputs:
                self.frozen_at.pop(inputs[0], None)
            if op == ".requires_grad=":
                return
        if op == ".grad":
            if inputs and not inputs[0].is_leaf:
                self.grad_reads.append((position(), weakref.ref(inputs[0])))
                del self.grad_reads[:-64]
            return
        if op in _REWRAP_OPS and args and not isinstance(args[0], torch.Tensor):
            # `torch.tensor([[a, b], [c, d]])` of tensors copies their values: a cut
            inputs = []
            _tensors(args[0], inputs, limit=4)
        if type(out) is torch.Tensor:  # (most ops)
            outputs = [out]
        else:
            outputs = []
            _tensors(out, outputs)
        if not outputs:
            if op == "__setitem__" and inputs:
                self._inplace(op, inputs[0], inputs[1:], position)
            return
        found_nodes: list[Node] = []
        any_grad_in = False
        known = self.nodes.by_id
        for t in inputs:  # (node_of, inline: a parameter's node is looked up once per op)
            node = known.get(id(t))
            if node is None or node() is not t:
                node = self._external(t)
            if node.requires_grad:
                any_grad_in = True
            found_nodes.append(node)
        parents = tuple(found_nodes)
        grad_on = torch.is_grad_enabled()
        pos = position()
        for index, t in enumerate(outputs):
            try:
                self._record_output(op, t, inputs, parents, any_grad_in, grad_on, pos, func, args, kwargs)
                if index:
                    node = self.nodes.get(t)
                    if node is not None:
                        node.output = index
            except RuntimeError:
                # torch refuses to inspect some tensors (a view made under no_grad whose base
                # was modified in place later raises on `.is_leaf`): skip that one tensor
                continue
        # the observers last: the op's tensors have their nodes (an op without a tensor output,
        # which returned above, is nothing they look at)
        if self.observers and (type(out) in PLAIN_TENSORS and not out.is_meta
                               or not isinstance(out, torch.Tensor) or has_values(out)):  # (a meta model: no values)
            for observe in self.observers:
                observe(op, args, kwargs, out, position)

    def _record_output(self, op: str, t: torch.Tensor, inputs: list[torch.Tensor],
                       parents: tuple[Node, ...], any_grad_in: bool, grad_on: bool,
                       pos: Position | None, func: Callable, args: tuple, kwargs: dict) -> None:
        if inputs and t is inputs[0] and op.endswith("_"):  # in-place: t keeps its identity
            self._inplace(op, t, inputs[1:], lambda: pos)
            if t.is_leaf or not grad_on:
                return  # an update (optimizer step, init): not part of the forward
        cut = None
        callers: tuple[Position, ...] | None = None
        if any_grad_in and not t.requires_grad:
            if op in _DETACH_OPS:
                cut = "detach"
            elif op == ".data":
                cut = "data"
            elif op in _REWRAP_OPS:
                cut = "rewrap"
            elif torch.is_inference_mode_enabled():
                cut = "inference_mode"
            elif not grad_on:
                cut = "no_grad"
                checkpointed = checkpoint_call(self._callers)
                if checkpointed is not None:  # a reentrant checkpoint's no_grad (see checkpointing.py)
                    cut = None if checkpointed[0] else "checkpoint"
                    callers = checkpointed[1]
                elif _in_function_forward():
                    # a custom autograd.Function's forward runs under no_grad by design: its
                    # backward() gives the gradient (`apply` joins the output to the graph)
                    cut = None
            else:
                cut = "nondiff"
        elif any_grad_in and grad_on and passes_no_gradient(op, func, args, kwargs, t):
            # sampling, rounding (see grad_probe)
            cut = "zero_grad"
        node = new_node(op, pos, parents, t, cut, self.step, self.nodes.drop)
        if op in _NUMBER_OPERAND_OPS and self.escapes:
            numbers = {id(a) for a in args if isinstance(a, float)}
            for esc in reversed(self.escapes):
                if numbers & esc.value_ids:
                    self.number_operands.append((node, esc))
                    del self.number_operands[:-64]
                    break
        if callers is not None:
            node.callers = callers
        elif cut in ("no_grad", "inference_mode") and not any(p.cut == cut for p in parents):
            node.callers = self._callers()
        self.nodes.by_id[node.key] = node  # (self.nodes.add, inline)
        if not inputs and pos is not None:
            # `nn.Parameter(torch.empty(...))` hides the factory's tensor behind a new object
            # on the same storage: remember where each freshly made storage came from
            storage = t.untyped_storage()
            self.made_at[storage.data_ptr()] = (pos, weakref.ref(storage))
            if len(self.made_at) > 65536:
                del self.made_at[next(iter(self.made_at))]
        if not inputs and op in _REWRAP_OPS:
            self.rewraps.append((node, _ids(args[0]) if args else frozenset()))
            del self.rewraps[:-64]
        if grad_on and t.requires_grad:
            for inp, parent in zip(inputs, parents, strict=True):
                if inp.requires_grad:
                    # (the last 8, flat in one tuple: (op, pos, version, op, ...); a tuple
                    # per use was one more object per parameter per traced step, which lived
                    # on into the oldest generation and brought on full collections)
                    parent.uses = (*parent.uses, op, pos, inp._version)[-24:]
        if inputs and t is inputs[0]:  # an in-place op's output: what read the tensor, still
            node.uses = parents[0].uses

    def _inplace(self, op: str, t: torch.Tensor, others: list[torch.Tensor],
                 position: Callable[[], Position | None]) -> None:
        if torch.is_grad_enabled() and (t.requires_grad or any(o.requires_grad for o in others)):
            # Keep what explaining a later version error needs: the tensor itself may be gone
            # by then (autograd keeps saved outputs without their Python object).
            self.inplace.append(Inplace(op, position(), weakref.ref(t), t._version,
                                        tuple(t.shape), list(self.uses_of(t)),
                                        self.nodes.get(t)))
            del self.inplace[:-64]


class ProvenanceMode(TorchFunctionMode):
    """Records every torch call into a ``Provenance``; never changes what the call returns."""

    def __init__(self, provenance: Provenance, on_error: Callable[[BaseException], None]) -> None:
        super().__init__()
        self.provenance = provenance
        self.paused = False
        self._on_error = on_error

    def __torch_function__(self, func, types, args=(), kwargs=None):
        __tracebackhide__ = True  # noqa: F841  (IPython hides this frame in tracebacks)
        kwargs = kwargs or {}
        if func is _MARK_BEGIN or func is _MARK_END:  # in every optimizer step(): no op of the user's
            return func(*args, **kwargs)
        before_write = self.provenance.before_write
        if before_write is not None and _writes(func, kwargs):
            try:
                with (DisableTorchFunction() if not dispatch_depth() else own_work()):
                    before_write()
            except Exception as exc:  # gradwatch's fault: stop tracing, run the user's op
                self.paused = True
                self.provenance.before_write = None
                self._on_error(exc)
        caller = sys._getframe(1)
        call = _call_as_from(caller)
        out = call(func, args, kwargs) if call is not None else func(*args, **kwargs)
        # (`inspectable()`, inline: every op)
        if not self.paused and _get_tracing_state() is None and not _functorch_active() \
                and _get_dispatch_mode(_FAKE) is None:
            try:
                with (DisableTorchFunction() if not dispatch_depth() else own_work()):  # (own_work(), inline)
                    self.provenance.record(func, args, kwargs, out, caller)
            except Exception as exc:  # gradwatch's fault: stop tracing, keep the user's result
                self.paused = True
                self._on_error(exc)
        return out


def _profiler_marks() -> tuple[Any, Any]:
    """``record_function``'s begin and end ops, as a torch function mode sees them (torch.optim's
    step() wraps itself in one)."""
    try:
        profiler = torch.ops.profiler
        return profiler._record_function_enter_new, profiler._record_function_exit._RecordFunction
    except (AttributeError, RuntimeError):  # pragma: no cover - a torch without them
        return object(), object()


_MARK_BEGIN, _MARK_END = _profiler_marks()


# --- what gradwatch may look at, and how it stays unseen -----------------------------------------
_FAKE = torch._C._TorchDispatchModeKey.FAKE
_get_tracing_state = torch._C._get_tracing_state
_get_dispatch_mode = torch._C._get_dispatch_mode
# (not `torch._C._functorch.peek_interpreter_stack()`: its first call makes functorch's thread
# state, which torch then copies at every autograd node of every later backward of the thread,
# gradwatch's or not; a transform's dispatch keys say the same without it)
_functorch_active = torch._C._are_functorch_transforms_active


def inspectable() -> bool:
    """Whether the tensors of the current op are real values gradwatch may look at: not while
    ``torch.jit.trace`` records (gradwatch's own ops would enter the trace, and reading a value
    warns), under a ``torch.func`` transform (``vmap``/``grad`` wrap tensors in levels that
    gradwatch's own ops must not mix) or under a ``FakeTensorMode``. Those ops are skipped."""
    return _get_tracing_state() is None and not _functorch_active() and _get_dispatch_mode(_FAKE) is None


def has_values(t: torch.Tensor) -> bool:
    """Whether ``t`` holds values (not a meta tensor or a FakeTensor: shape and dtype only)."""
    if t.is_meta:
        return False
    if type(t) in PLAIN_TENSORS:  # (the loss of every step: no subclass lookup)
        return True
    fake = sys.modules.get("torch._subclasses.fake_tensor")
    return fake is None or not isinstance(t, fake.FakeTensor)


_FUNCTION_APPLY = torch.autograd.function.Function.apply.__func__.__code__


def _in_function_forward(depth: int = 24) -> bool:
    """Whether the current op runs inside a custom ``autograd.Function``'s ``forward`` (its
    ``apply`` is a few frames up: the forward, the user's helpers, the tracing mode). Asked only
    for an op that would be a no_grad cut."""
    frame = sys._getframe(2)
    while frame is not None and depth:
        if frame.f_code is _FUNCTION_APPLY:
            return True
        frame, depth = frame.f_back, depth - 1
    return False


def own_work() -> Any:
    """gradwatch's own tensor work: no torch function mode, tensor subclass or dispatch mode of
    the user's sees it (their counts, traces and logs stay as without gradwatch). Used like
    ``torch.no_grad()``; without a dispatch mode (every step of a plain loop) it is torch's own
    C context manager, no Python frame of ours."""
    if dispatch_depth():
        return _OwnWorkUnderDispatch()
    return DisableTorchFunction()


# (the per-step hooks inline `own_work`, one Python call fewer each:
# ``with (DisableTorchFunction() if not dispatch_depth() else own_work()):``)
DisableTorchFunction = torch._C.DisableTorchFunction
dispatch_depth = torch._C._len_torch_dispatch_stack


class _OwnWorkUnderDispatch:
    __slots__ = ("_function", "_dispatch")

    def __enter__(self) -> None:
        from torch.utils._python_dispatch import _disable_current_modes

        self._function = DisableTorchFunction()
        self._function.__enter__()
        self._dispatch = _disable_current_modes()
        self._dispatch.__enter__()

    def __exit__(self, *exc: Any) -> None:
        try:
            self._dispatch.__exit__(*exc)
        finally:
            self._function.__exit__(*exc)


# --- warnings keep their place ------------------------------------------------------------------
# A warning raised inside an op (PyTorch's C++ warnings, or `warnings.warn(..., stacklevel=2)` in
# torch.nn.functional) is attributed to the Python frame that called the op. With this mode on
# the stack that frame would be `__torch_function__` above, and the user would be sent to
# gradwatch's source (and its warning registry). So the op is called through a one-line
# function compiled with the caller's file name, line and globals: the warning lands exactly
# where it lands without gradwatch, and "once per location" filters keep working.
_OVERRIDES = os.path.normcase(torch.overrides.__file__)
_CALLERS: dict[tuple[CodeType, int], Callable] = {}


_IN_OVERRIDES: dict[str, bool] = {}  # file name -> whether it is torch.overrides (asked every op)


def _in_overrides(filename: str) -> bool:
    found = _IN_OVERRIDES.get(filename)
    if found is None:
        if len(_IN_OVERRIDES) > 4096:
            _IN_OVERRIDES.clear()
        found = _IN_OVERRIDES[filename] = os.path.normcase(filename) == _OVERRIDES
    return found


def _call_as_from(frame: FrameType | None) -> Callable | None:
    caller = frame
    if caller is not None and (_IN_OVERRIDES.get(caller.f_code.co_filename) is not False
                               and _in_overrides(caller.f_code.co_filename)):
        # dispatched from Python (torch.nn.functional): the warning names the caller of the
        # public function, one frame above it
        while caller is not None and _in_overrides(caller.f_code.co_filename):
            caller = caller.f_back
        caller = caller.f_back if caller is not None else None
    if caller is None:
        return None
    key = (caller.f_code, caller.f_lineno)
    call = _CALLERS.get(key)
    if call is None:
        if len(_CALLERS) > 4096:
            _CALLERS.clear()
        call = _CALLERS[key] = types.FunctionType(_call_code(caller.f_code.co_filename, caller.f_lineno),
                                                  caller.f_globals, "<op>", (True,))
    return call


# (file name, line) -> the compiled one-line call: kept across cells (it refers to no object of
# the user's; the function made from it holds the caller's globals and is dropped with `_CALLERS`),
# so a cell's first traced ops do not compile again what an earlier cell compiled
_CALL_CODES: dict[tuple[str, int], CodeType] = {}


def _call_code(filename: str, line: int) -> CodeType:
    key = (filename, line)
    code = _CALL_CODES.get(key)
    if code is None:
        if len(_CALL_CODES) > 4096:
            _CALL_CODES.clear()
        source = "\n" * (max(line, 1) - 1) + (
            "lambda func, args, kwargs, __tracebackhide__=True: func(*args, **kwargs)")
        for const in compile(source, filename, "eval").co_consts:  # (a loop: no Python call)
            if isinstance(const, CodeType):
                code = _CALL_CODES[key] = const
                break
    assert code is not None
    return code


def forget_callers() -> None:
    """Drop the cached call sites (they hold the callers' module globals) and op names (their
    functions may be the user's)."""
    _CALLERS.clear()
    _OP_NAMES.clear()
    _WRITES.clear()
