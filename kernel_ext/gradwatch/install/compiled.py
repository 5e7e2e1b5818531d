"""torch.compile: gradwatch stays out of compiled code and observes it from outside.

Dynamo guards every compiled frame on the torch-function mode stack and traces into the modes
on it. With the tracing mode on the stack, a compiled model would be compiled again with
gradwatch's own code inside (graph breaks, recompiles, warnings naming gradwatch's files) and
compiled again without it once tracing ends. So the mode steps aside whenever dynamo may run
or compile frames: every entry into dynamo-managed code (a compiled function or module, a
``torch._dynamo.optimize`` block) and every exit from it (also into a ``torch._dynamo.disable``
region) sets the thread's eval-frame callback through ``torch._dynamo.eval_frame.
_maybe_set_eval_frame``. While a callback is set, the mode is off this thread's stack; when it
is cleared, the mode is back. A compiled call is then one opaque step for provenance, exactly
as dynamo sees the program without gradwatch.

The mode comes off *before* the callback is set and goes back on *after* it is cleared:
gradwatch's own frames never run while dynamo intercepts frames.

What provenance cannot see inside, the graph dynamo made can tell: when a compiled module is
compiled during the session, the ``.detach()`` calls in its graph (with the user's source line
in each node's stack trace) are kept, and the output of a traced call of that module gets a
provenance node that is that cut, with the module's parameters and inputs as parents. The flow
analysis then names the ``.detach()`` that keeps a loss from the parameters before it.
"""

from __future__ import annotations

import dis
import os
import re
import sys
from types import CodeType, FrameType
from typing import Any, Callable

import torch
from torch.utils.weak import WeakIdKeyDictionary

from . import modes
from ..trace.provenance import Node, own_work

_EVAL_FRAME = "torch._dynamo.eval_frame"
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the gradwatch package
_CONTEXT_METHODS = ("__enter__", "__exit__")


def _dynamo_caller(frame: FrameType | None) -> Any:
    """What pairs an entry with its exit: dynamo's calling frame, or for a context manager's
    ``__enter__``/``__exit__`` the context object."""
    while frame is not None and frame.f_code.co_filename.startswith(_HERE):
        frame = frame.f_back  # the installer's wrapper
    if frame is not None and frame.f_code.co_name in _CONTEXT_METHODS:
        return frame.f_locals.get("self", frame)
    return frame


class CompiledRegions:
    """Keeps the session's tracing mode off the stack while dynamo's callback is set, and
    records compiled modules' cuts from outside."""

    def __init__(self, installer: Any, current_mode: Callable[[], Any], provenance: Any = None,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self._installer = installer
        self._on_error = on_error
        self._current_mode = current_mode  # the session's tracing mode, or None
        self._provenance = provenance
        # per graph compiled now: (file, line) of its cuts, ids of the tensors they cut off
        self._graph_cuts: list[tuple[list[tuple[str, int]], set[int]]] = []
        self._module_cuts: WeakIdKeyDictionary = WeakIdKeyDictionary()  # module -> (positions, cut off)
        self._aside: Any = None  # the mode taken off for a compiled region
        self._entries: list[tuple[Any, bool]] = []  # (dynamo's caller, whether it set a callback)
        self._hooked = False
        self.entered = False  # compiled code ran (or was compiled) in this session

    def install(self) -> None:
        module = sys.modules.get(_EVAL_FRAME)
        if module is not None:
            self._hook(module)
        else:  # dynamo is imported by the first torch.compile(): hook it then
            self._installer.patch(torch, "compile", self._wrap_compile)

    def _wrap_compile(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def compile(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            module = sys.modules.get(_EVAL_FRAME)
            if module is not None and not self._installer.closed:
                self._hook(module)
            return result
        return compile

    def _hook(self, module: Any) -> None:
        if self._hooked or not callable(getattr(module, "_maybe_set_eval_frame", None)):
            return
        self._hooked = True
        _skip_frames(self._installer.entry_codes())
        self._installer.patch(module, "_maybe_set_eval_frame", self._wrap_set_eval_frame, dynamo_internal=True)
        self._installer.add_undo(self._forget)
        output_graph = sys.modules.get("torch._dynamo.output_graph")
        if self._provenance is not None and output_graph is not None \
                and callable(getattr(module, "OptimizedModule", None)) \
                and callable(getattr(getattr(output_graph, "OutputGraph", None), "call_user_compiler", None)):
            self._installer.patch(output_graph.OutputGraph, "call_user_compiler", self._wrap_user_compiler,
                                  dynamo_internal=True)
            self._installer.patch(module.OptimizedModule, "__call__", self._wrap_module_call)

    def _wrap_set_eval_frame(self, original: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def set_eval_frame(callback: Any) -> Any:
            # dynamo sets a callback on entry and puts the prior one back on exit, from the same
            # frame (a compiled function's wrapper, a `disable` wrapper) or the same context
            # object (`__enter__`/`__exit__`): entries and exits nest, and the mode stays aside
            # while any entry set a callback (a `disable` region inside compiled code, or one
            # that dynamo runs while it compiles, does not bring it back)
            caller = _dynamo_caller(sys._getframe(1))
            entries = self._entries
            if entries and entries[-1][0] is caller:
                entries.pop()
            else:
                entries.append((caller, callback is not None))
            if any(active for _, active in entries):
                self.entered = True
                self._step_aside()
                return original(callback)
            prior = original(callback)
            self._step_back()
            return prior
        return set_eval_frame

    def _step_aside(self) -> None:
        mode = self._current_mode()
        if mode is not None and self._aside is None and modes.on_stack(mode):
            modes.remove(mode)
            self._aside = mode

    def _forget(self) -> None:
        self._aside = None  # the session's end takes its mode off wherever it is
        self._entries.clear()
        self._graph_cuts.clear()
        self._module_cuts = WeakIdKeyDictionary()

    # --- cuts inside compiled modules, seen from outside ------------------------------------------
    def _wrap_user_compiler(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def call_user_compiler(graph: Any, gm: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                cuts = _cuts_in(gm)
                if cuts:
                    self._graph_cuts.append((cuts, _cut_off(gm)))
            except Exception:  # (a graph gradwatch cannot read: nothing to add)
                pass
            return original(graph, gm, *args, **kwargs)
        return call_user_compiler

    def _wrap_module_call(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def call(module: Any, *args: Any, **kwargs: Any) -> Any:
            before = len(self._graph_cuts)
            out = original(module, *args, **kwargs)
            try:
                if len(self._graph_cuts) > before:  # compiled during this call
                    graphs = self._graph_cuts[before:]
                    del self._graph_cuts[before:]
                    positions = _positions(module, [cut for cuts, _ in graphs for cut in cuts])
                    cut_off = set().union(*(ids for _, ids in graphs))
                    if positions and cut_off:
                        self._module_cuts[module] = (positions[0], cut_off)
                found = self._module_cuts.get(module)
                mode = self._current_mode()
                if found and mode is not None and not mode.paused:
                    with own_work():
                        self._record(module, args, kwargs, out, *found)
            except Exception as exc:  # gradwatch's fault: the user's result stays
                if self._on_error is not None:
                    self._on_error(exc)
            return out
        return call

    def _record(self, module: Any, args: tuple, kwargs: dict, out: Any, pos: Any, cut_off: set[int]) -> None:
        """The outputs' node: the module's parameters and inputs, those that the graph's cuts
        keep from every output behind a cut at ``pos`` (the ``.detach()``)."""
        prov = self._provenance
        inputs = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        kept: list[Node] = []
        cut: list[Node] = []
        for t in (*inputs, *module.parameters()):
            (cut if id(t) in cut_off else kept).append(prov.node_of(t))
        if not cut:
            return
        outputs = [out] if isinstance(out, torch.Tensor) else \
            [t for t in out if isinstance(t, torch.Tensor)] if isinstance(out, (list, tuple)) else []
        for t in outputs:
            detach = Node("detach", pos, tuple(cut), t if not kept else None, "detach", prov.step)
            prov.nodes[t] = detach if not kept else Node(type(module).__name__, None, (*kept, detach), t, None,
                                                         prov.step)

    def _step_back(self) -> None:
        mode, self._aside = self._aside, None
        # back only while it is still the session's live mode (tracing may have ended meanwhile)
        if mode is not None and mode is self._current_mode() and not modes.on_stack(mode):
            modes.push(mode)


def _skip_frames(codes: tuple[CodeType, ...]) -> None:
    """Dynamo compiles no frame of these functions (gradwatch's wrappers and hooks) when
    compiled code calls them eagerly (after a graph break); they take its callback off for
    gradwatch's work and put it back for the original's."""
    try:
        from torch._C._dynamo.eval_frame import _FrameAction, _FrameExecStrategy, set_code_exec_strategy
    except ImportError:  # pragma: no cover - another torch
        return
    for code in codes:
        set_code_exec_strategy(code, _FrameExecStrategy(_FrameAction.SKIP, _FrameAction.DEFAULT))


class CompiledSteps:
    """Optimizer steps that compiled code ran. Dynamo traces the optimizer's step hooks into its
    graph (gradwatch's hook is nothing there), so a compiled ``opt.step()`` calls no gradwatch
    code. Such a step is found at gradwatch's next eager call (``zero_grad()``, ``backward()``,
    the cell's end), before that call is handled, from the version counters of a sample of the
    optimizer's parameters (every in-place update bumps them; ``zero_grad`` and ``backward``
    touch only ``.grad``). A step gradwatch saw itself resets the count (`stepped`)."""

    _SAMPLE = 16  # parameters per optimizer, spread over its list

    def __init__(self, entered: Callable[[], bool], optimizers: Callable[[], list[tuple[Any, int]]],
                 on_step: Callable[[Any], None]) -> None:
        self._entered = entered  # whether compiled code ran in the session
        self._optimizers = optimizers  # the session's (optimizer, key) pairs
        self._on_step = on_step
        self._stamps: dict[int, tuple[int, int, list[torch.Tensor]]] = {}  # key -> (params, stamp, sample)

    def stepped(self, key: int) -> None:
        """A step gradwatch's hook saw: its updates are no compiled step."""
        self._stamps.pop(key, None)

    def catch_up(self) -> None:
        if not self._entered():
            return  # nothing compiled ran: every step was seen by the hook
        for opt, key in self._optimizers():
            n_params = sum(len(g["params"]) for g in opt.param_groups)
            last = self._stamps.get(key)
            sample = last[2] if last is not None and last[0] == n_params else _sample(opt, self._SAMPLE)
            stamp = sum(p._version for p in sample)
            if last is not None and last[0] == n_params and stamp != last[1]:
                self._on_step(opt)  # (it calls `stepped`: the new stamp goes in after)
            self._stamps[key] = (n_params, stamp, sample)

    def finish(self) -> None:
        """The cell's end: a last compiled step, then no reference to the parameters."""
        try:
            self.catch_up()
        finally:
            self._stamps.clear()


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


def _is_detach(node: Any) -> bool:
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    return node.op in ("call_method", "call_function") and target == "detach"


def _sample(opt: Any, n: int) -> list[torch.Tensor]:
    params = [p for g in opt.param_groups for p in g["params"]]
    return params[::max(1, -(-len(params) // n))]


_FRAME = re.compile(r'File "(.+)", line (\d+), in ')


def _cuts_in(gm: Any) -> list[tuple[str, int]]:
    """(file, line) of the user's ``.detach()`` calls in a graph dynamo made."""
    out = []
    for node in gm.graph.nodes:
        if _is_detach(node):
            frames = _FRAME.findall(node.meta.get("stack_trace") or "")
            if frames:
                out.append((frames[-1][0], int(frames[-1][1])))
    return out


def _positions(module: Any, cuts: list[tuple[str, int]]) -> list[tuple[Any, int]]:
    """Code positions (the ``.detach()`` call's instruction) of graph cuts, in the forward
    methods of the compiled module and its submodules."""
    codes = {}
    for sub in getattr(module, "_orig_mod", module).modules():
        code = getattr(type(sub).forward, "__code__", None)
        if code is not None:
            codes.setdefault(code.co_filename, []).append(code)
    out = []
    for filename, line in cuts:
        for code in codes.get(filename, ()):
            offset = _detach_call(code, line)
            if offset is not None:
                out.append((code, offset))
                break
    return out


def _detach_call(code: Any, line: int) -> int | None:
    seen_detach = False
    for ins in dis.get_instructions(code):
        if ins.positions is None or ins.positions.lineno != line:
            continue
        if ins.argval == "detach":
            seen_detach = True
        elif seen_detach and ins.opname == "CALL":
            return ins.offset
    return None
