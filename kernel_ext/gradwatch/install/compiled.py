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
gradwatch's own frames never run while dynamo intercepts frames. The session's global hooks
(the optimizer step hooks) come out of torch's hook dicts at the same moments: dynamo guards
every frame that steps an optimizer on those dicts, so a step compiled in an earlier plain
cell would fail its guards under gradwatch (compiled again, one more graph break), and one
compiled under gradwatch would fail them in the next plain cell. Compiled steps are found from
outside instead (`CompiledSteps`).

Outside compiled code, a ``disable`` wrapper (every optimizer ``step()`` and ``zero_grad()``)
clears a callback that is not set: that call costs one comparison, no frame walk.

What provenance cannot see inside, the graph dynamo made can tell: when a compiled module is
compiled during the session, ``trace/compiled_graph.py`` reads its graph (the ``.detach()``
calls and the parameters they keep from every output, the op that made each output), and the
outputs of a traced call of that module get provenance nodes with those facts. The flow
analysis then names the ``.detach()`` that keeps a loss from the parameters before it, and the
loss checks see the ``softmax`` that made a compiled classifier's output.
"""

from __future__ import annotations

import os
import sys
import threading
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import torch
from torch.utils.weak import WeakIdKeyDictionary

from . import modes
from ..trace import compiled_graph
from ..trace.provenance import own_work

if TYPE_CHECKING:
    from torch.utils.hooks import RemovableHandle

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
                 on_error: Callable[[BaseException], None] | None = None,
                 on_first_entry: Callable[[], None] | None = None) -> None:
        self._installer = installer
        self._on_error = on_error
        self._on_first_entry = on_first_entry  # told once, when compiled code first runs
        self._current_mode = current_mode  # the session's tracing mode, or None
        self._provenance = provenance
        self._graphs: list[compiled_graph.GraphFacts] = []  # graphs compiled during compiled modules' calls
        self._module_calls = 0  # compiled modules' calls in progress
        self._module_facts: WeakIdKeyDictionary = WeakIdKeyDictionary()  # module -> ModuleFacts
        self._aside: Any = None  # the mode taken off for a compiled region
        self._entries: list[tuple[Any, bool]] = []  # (dynamo's caller, whether it set a callback)
        self._active = 0  # entries that set a callback
        self._hooks_aside = _HooksAside(installer.hook_handles)
        self._hooked = False
        self._runs = 0  # calls that set or kept a callback: compiled code may run after each
        self._runs_asked = 0
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
        set_eval_frame = self._wrap_set_eval_frame(module._maybe_set_eval_frame)
        _skip_frames((set_eval_frame.__code__,))
        self._installer.replace(module, "_maybe_set_eval_frame", set_eval_frame)
        self._installer.add_undo(self._forget)
        output_graph = sys.modules.get("torch._dynamo.output_graph")
        if self._provenance is not None and output_graph is not None \
                and callable(getattr(module, "OptimizedModule", None)) \
                and callable(getattr(getattr(output_graph, "OutputGraph", None), "call_user_compiler", None)):
            self._installer.patch(output_graph.OutputGraph, "call_user_compiler", self._wrap_user_compiler,
                                  dynamo_internal=True)
            self._installer.patch(module.OptimizedModule, "__call__", self._wrap_module_call)

    def _wrap_set_eval_frame(self, original: Callable[[Any], Any]) -> Callable[[Any], Any]:
        installer, get_ident = self._installer, threading.get_ident

        def set_eval_frame(callback: Any) -> Any:
            # dynamo sets a callback on entry and puts the prior one back on exit, from the same
            # frame (a compiled function's wrapper, a `disable` wrapper) or the same context
            # object (`__enter__`/`__exit__`): entries and exits nest, and the mode stays aside
            # while any entry set a callback (a `disable` region inside compiled code, or one
            # that dynamo runs while it compiles, does not bring it back)
            if callback is None and not self._active:
                # no callback set and none to set (a `disable` wrapper outside compiled code):
                # nothing changes, and its exit (None again) comes here too
                return original(callback)
            if get_ident() != installer.thread or installer.closed:
                return original(callback)  # (another thread's; or a reference kept past the session)
            caller = _dynamo_caller(sys._getframe(1))
            entries = self._entries
            if entries and entries[-1][0] is caller:
                self._active -= entries.pop()[1]
            else:
                entries.append((caller, callback is not None))
                self._active += callback is not None
            if self._active:
                if not self.entered:
                    self.entered = True
                    if self._on_first_entry is not None:
                        self._on_first_entry()
                self._runs += 1
                self._step_aside()
                return original(callback)
            prior = original(callback)
            self._step_back()
            return prior
        return set_eval_frame

    def may_have_run(self) -> bool:
        """Whether compiled code may have run since the last call: it runs now (gradwatch was
        called eagerly from it), or dynamo set its callback since."""
        ran = self._active > 0 or self._runs != self._runs_asked
        self._runs_asked = self._runs
        return ran

    def _step_aside(self) -> None:
        self._hooks_aside.take_out()  # (each time: a hook registered meanwhile comes out too)
        self._installer.set_aside("compiled code")  # (an optimizer class's step(), patched)
        mode = self._current_mode()
        if mode is not None and self._aside is None and modes.on_stack(mode):
            modes.remove(mode)
            self._aside = mode

    def _forget(self) -> None:
        self._aside = None  # the session's end takes its mode off wherever it is
        self._hooks_aside.drop()  # and its hooks
        self._entries.clear()
        self._active = 0
        self._graphs.clear()
        self._module_facts = WeakIdKeyDictionary()

    # --- facts of compiled modules' graphs, seen from outside ------------------------------------
    def _wrap_user_compiler(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def call_user_compiler(graph: Any, gm: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                if self._module_calls:  # (a compiled function's graphs: nothing reads their facts)
                    self._graphs.append(compiled_graph.read_graph(gm))
            except Exception:  # (a graph gradwatch cannot read: nothing to add)
                pass
            return original(graph, gm, *args, **kwargs)
        return call_user_compiler

    def _wrap_module_call(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def call(module: Any, *args: Any, **kwargs: Any) -> Any:
            before = len(self._graphs)
            self._module_calls += 1
            try:
                out = original(module, *args, **kwargs)
            finally:
                self._module_calls -= 1
            try:
                if len(self._graphs) > before:  # compiled during this call
                    graphs = self._graphs[before:]
                    del self._graphs[before:]
                    facts = compiled_graph.module_facts(module, graphs)
                    if facts is not None:
                        self._module_facts[module] = facts
                found = self._module_facts.get(module)
                mode = self._current_mode()
                if found is not None and mode is not None and not mode.paused:
                    with own_work():
                        compiled_graph.record_call(self._provenance, module, args, kwargs, out, found)
            except Exception as exc:  # gradwatch's fault: the user's result stays
                if self._on_error is not None:
                    self._on_error(exc)
            return out
        return call

    def _step_back(self) -> None:
        self._hooks_aside.put_back()
        self._installer.put_aside_back("compiled code")
        mode, self._aside = self._aside, None
        # back only while it is still the session's live mode (tracing may have ended meanwhile)
        if mode is not None and mode is self._current_mode() and not modes.on_stack(mode):
            modes.push(mode)


class _HooksAside:
    """The session's hooks out of torch's hook dicts while dynamo runs frames, back in the
    order they were in (a hook the user registered meanwhile after them)."""

    def __init__(self, handles: Callable[[], list[RemovableHandle]]) -> None:
        self._handles = handles  # the session's live hooks
        self._out: list[tuple[RemovableHandle, Any]] = []  # (handle, hook)
        self._orders: dict[int, tuple[dict, list[Any]]] = {}  # id(dict) -> (dict, its keys before)

    def take_out(self) -> None:
        for handle in self._handles():
            hooks = handle.hooks_dict_ref()
            if hooks is not None and handle.id in hooks:
                self._orders.setdefault(id(hooks), (hooks, list(hooks)))
                self._out.append((handle, hooks.pop(handle.id)))

    def put_back(self) -> None:
        if not self._out:
            return
        live = {id(handle) for handle in self._handles()}  # (one removed meanwhile stays out)
        out, orders = self._out, self._orders
        self.drop()
        for handle, hook in out:
            hooks = handle.hooks_dict_ref()
            if hooks is not None and id(handle) in live:
                hooks[handle.id] = hook
        for hooks, before in orders.values():
            known = set(before)
            order = [k for k in before if k in hooks] + [k for k in hooks if k not in known]
            if list(hooks) != order:
                items = [(k, hooks[k]) for k in order]
                hooks.clear()
                hooks.update(items)

    def drop(self) -> None:
        self._out, self._orders = [], {}


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
    graph (gradwatch's hook is out of it while dynamo runs), so a compiled ``opt.step()`` calls no
    gradwatch code. Such a step is found at gradwatch's next eager call (``zero_grad()``,
    ``backward()``, the cell's end), before that call is handled, from the version counters of a
    sample of the optimizer's parameters (every in-place update bumps them; ``zero_grad`` and
    ``backward`` touch only ``.grad``). Only when compiled code may have run since the last look
    are all optimizers looked at; otherwise only those whose step gradwatch saw (`stepped`): their
    count is taken again, as the new start."""

    _SAMPLE = 16  # parameters per optimizer, spread over its list

    def __init__(self, ran: Callable[[], bool], optimizers: Callable[[], list[tuple[Any, int]]],
                 on_step: Callable[[Any], None]) -> None:
        self._ran = ran  # whether compiled code may have run since the last call
        self._optimizers = optimizers  # the session's (optimizer, key) pairs
        self._on_step = on_step
        self._stamps: dict[int, _Stamp] = {}  # key -> its sample's count when last looked at
        self._seen: set[int] = set()  # keys whose step gradwatch saw since: counted again, not compared
        self.visits = 0  # optimizers looked at (tests count the work)

    def stepped(self, key: int) -> None:
        """A step gradwatch's hook saw: its updates are no compiled step."""
        if key in self._stamps:
            self._seen.add(key)

    def catch_up(self) -> None:
        if self._ran():
            for opt, key in self._optimizers():
                self._look(opt, key)
            self._seen.clear()
        elif self._seen:  # nothing compiled ran: only the seen steps' updates changed the counts
            for key in list(self._seen):
                stamp = self._stamps.get(key)
                if stamp is not None:
                    self._look(stamp.opt, key)
            self._seen.clear()

    def _look(self, opt: Any, key: int) -> None:
        self.visits += 1
        n_params = sum(len(g["params"]) for g in opt.param_groups)
        last = self._stamps.get(key)
        if last is None or last.opt is not opt or last.n_params != n_params:
            last = None
            sample = _sample(opt, self._SAMPLE)
        else:
            sample = last.sample
        count = sum(p._version for p in sample)
        if last is not None and count != last.count and key not in self._seen:
            self._on_step(opt)  # (it calls `stepped`: the key is in `_seen` until catch_up ends)
        self._stamps[key] = _Stamp(opt, n_params, count, sample)

    def finish(self) -> None:
        """The cell's end: a last compiled step, then no reference to the parameters."""
        try:
            self.catch_up()
        finally:
            self._stamps.clear()
            self._seen.clear()


class _Stamp(NamedTuple):
    opt: Any
    n_params: int
    count: int  # the sum of the sample's version counters
    sample: list[torch.Tensor]


def _sample(opt: Any, n: int) -> list[torch.Tensor]:
    params = [p for g in opt.param_groups for p in g["params"]]
    return params[::max(1, -(-len(params) // n))]
