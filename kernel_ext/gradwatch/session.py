"""``watch()``: a watch session: what it observes, and the report made from it.

Everything is installed through one `Installer` (``install/installer.py``): on the session's own
thread only, taken off on any exit (exceptions and KeyboardInterrupt included, also one that
lands during the teardown), and refused while a session runs in another thread. Sessions do not
nest. After the cell, the rules turn the recorded events into a `Report`; the session keeps no
user object alive.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
import threading
import traceback
import types
import weakref
from typing import Any, Iterable

import torch

from . import intent
from .diagnostics import Location, Severity
from .events import (BackwardEvent, Events, Flow, GradReadEvent, InputScale, OptimizerEvent, StepCounts, StepEvent,
                     TensorFact)
from .locate import NamespaceIndex, Namer, SourceMap
from .measurements import LazyNames
from .news import OnFinding
from .report import Report
from .trace import explain
from .trace.flow import BackwardGraph, FlowAnalyzer, data_leaves, related_tensor_ids
from .install.collector import collection_paused
from .install.compiled import CompiledRegions, CompiledSteps
from .monitors.schedule import StepSchedule
from .monitors.training import TrainingMonitor
from .install.installer import InstallConflict, Installer, Patch
from .install.monitor_handle import MonitorHandle
from .install.optimizer_table import OptimizerRecord, OptimizerTable
from .install.steady_cycle import BACKWARD, STEP, ZERO_GRAD, SteadyCycle
from .trace.provenance import (DisableTorchFunction, Provenance, ProvenanceMode, dispatch_depth, forget_callers,
                               own_work)

_active = threading.local()
_MAX_STEP_EVENTS = 32
_NO_GRAD_NAMES = ("no_grad", "inference_mode", "set_grad_enabled")
_GRAD_CALLS_FREE = 8  # autograd.grad() calls (inner loops, penalties) that do not use up tracing
_NOT_TRACING = "not tracing"  # why the installer's step() patches are set aside
_torch_function_mode_on = torch._C._is_torch_function_mode_enabled


class WatchError(RuntimeError):
    """gradwatch was used wrongly (e.g. nested sessions)."""


class Watch:
    """A watch session. Use through `gradwatch.watch()`.

    ``trace_steps`` is how many ``backward()`` calls run with full provenance tracing (the
    expensive part; default: the schedule's); after that only cheap per-step checks run, on the
    steps that ``schedule`` (one `StepSchedule` for every sampled check) picks.
    ``per_step_monitors=False`` leaves out the training-dynamics monitor (GW101-GW115): the
    benchmark's measure of what the session alone costs.
    """

    def __init__(self, *, select: Iterable[str] | None = None, ignore: Iterable[str] | None = None,
                 trace_steps: int | None = None, schedule: StepSchedule | None = None,
                 shell: Any = None, source_map: SourceMap | None = None,
                 namespace: dict[str, Any] | None = None, code: str | None = None,
                 execution_count: int | None = None, warn: bool = True,
                 on_finding: OnFinding | None = None, per_step_monitors: bool = True) -> None:
        # what a second `with` of this object starts afresh from (its own events and report)
        self._options = {name: value for name, value in locals().items() if name != "self"}
        self._used = False
        from .rules import registry

        self.select = registry.expand(select) if select else None
        self.ignore = registry.expand(ignore) if ignore else set()
        self.schedule = schedule or StepSchedule()
        if trace_steps is not None:
            self.schedule = dataclasses.replace(self.schedule, trace_backward_calls=trace_steps)
        self.trace_steps = self.schedule.trace_backward_calls
        self.source_map = source_map or SourceMap(shell)
        self._namespace = namespace if namespace is not None else {}  # the user's globals
        # its names, read once and then kept up to date by identity (see NamespaceIndex)
        self._ns_index = NamespaceIndex(self._namespace, self._moment, code)
        self.warn = warn
        self._on_finding = on_finding  # news of an error-level finding while the cell runs
        self._told: set[str] = set()
        self.report = Report(execution_count=execution_count)
        self.events = Events()
        self.provenance = Provenance(self._position_from, self._callers)
        self.mode: ProvenanceMode | None = None
        self.optimizers = OptimizerTable()
        # optimizers that stepped after the current backward() call (and after the one before):
        # with many of them, they take turns for the sampled checks (`StepSchedule.thinned`)
        self._stepped_at, self._stepped, self._stepped_before = -1, 0, 0
        # ... and those a traced backward() call reached the parameters of: they step next
        self._fed = 0
        # traced flows whose reached trainables are not named yet (see `_reached_named_later`)
        self._unnamed_flows: list[tuple[Flow, list[Any]]] = []
        # while the cell concludes (the user's code stopped): one namer for all (see `_namer`)
        self._concluding = False
        self._final_namer: Namer | None = None
        self._opt_locations = self.optimizers.locations  # key -> where it was built
        self.installer = Installer(self._internal_error)  # replaced by the one `__enter__` claims with
        self._in_backward = False  # inside a watched backward(): calls it makes are not watched again
        self._nested_backward: Patch | None = None  # the autograd.backward patch (paused while in one)
        self._compiled_steps = CompiledSteps(lambda: False, self.optimizers.items, self._on_compiled_step)
        self._regions: CompiledRegions | None = None  # (until compiled code runs, no step of it to find)
        self._trained_names = intent.trained_names(code) if code else set()
        self._per_step_monitors = per_step_monitors
        self._monitor: TrainingMonitor | None = None  # the training-dynamics monitor, unless left out
        self._trace_until = 0
        self._lifted_for_step = False  # the tracing mode is off the stack while step() runs
        self._step_post: Any = None  # the post-step hook that puts it back (while tracing)
        self._trace_requested = 0
        # the steady cycle (see `install/steady_cycle.py`): armed at a step, settled before any
        # call it does not take; and the last zero_grad() seen in full: (optimizer key, backward calls)
        self._steady: SteadyCycle | None = None
        self._last_zero_grad = (0, -1)
        self._fed_traced: set[int] = set()  # optimizers stepped with gradients a traced backward() gave them
        self._consumed: set[tuple[int, int]] = set()  # (backward index, optimizer key): in its `consumers`
        self._step_classes: set[type] = set()  # optimizer classes whose step() lifts the tracing mode
        self._step_caller: Any = None  # the frame that called a lifting step(), while its pre-hook is due
        self._optimizer_classes: set[type] = set()  # classes of the optimizers built in the cell
        self._retraced: list[int] = []  # optimizers traced again because of a missing gradient
        self._missing: dict[int, int] = {}  # optimizer key -> parameters without grad at its last check
        self._trace_for: int | None = None  # trace until this optimizer's next step
        self._grad_calls_traced = 0
        self.step_positions: dict[int, Any] = {}  # optimizer key -> position of its last traced step()
        # data of the first traced loss: (tensor, position, whether it is the target)
        self._inputs: list[tuple[weakref.ref, Any, bool]] = []

    def tell(self, code: str, message: str) -> None:
        """An error-level finding seen while the code runs, at a point where a monitor reads
        the host anyway: passed on at once, once per code (``--fail-fast`` raises here)."""
        if self._on_finding is not None and code not in self._told:
            self._told.add(code)
            self._on_finding(code, message)

    # --- life cycle ------------------------------------------------------------------------
    def __enter__(self) -> Report:
        if getattr(_active, "session", None) is not None:
            raise WatchError("gradwatch.watch() sessions do not nest")
        if self._used:  # a Watch used again: nothing of the earlier use is reported twice
            self.__init__(**self._options)
        self._used = True
        installer = Installer(self._internal_error)
        try:
            installer.claim()
        except InstallConflict as exc:
            raise WatchError(str(exc)) from None
        try:
            installer.defer_interrupts_in(Watch.__exit__.__code__)
            _active.session = self
            installer.add_undo(_clear_active)
            self.installer = installer
            self._install(installer)
        except BaseException:
            installer.close()
            raise
        return self.report

    def __exit__(self, exc_type, exc, tb) -> None:
        __tracebackhide__ = True
        installer = self.installer
        try:
            installer.close()  # first: nothing stays installed, whatever happens below
        finally:
            installer.close()  # (idempotent) again, in case an interrupt cut the first call short
            self._ns_index.freeze()  # the user's code has stopped: names are read at most once more
            self._concluding = True
            self._guard(self._settle_steady)
            self._finish_monitors()
            if self._monitor is not None:
                self._guard(self._monitor.close)
        try:
            self._guard(self._name_reached_if_compared)  # (its fault must not cost the report)
            self._conclude(exc)
        except Exception as err:
            self._internal_error(err)
        finally:
            for measurement in self.events.measurements:  # (names no rule read: not worked out)
                if isinstance(names := getattr(measurement, "params", None), LazyNames):
                    names.seal()
            self._ns_index.close()  # no reference to the user's objects after the cell
            self._concluding, self._final_namer = False, None
        if self.warn and self.report.diagnostics:
            if exc is None:
                self.report.warn()  # under `-W error` this raises, as it should
            else:
                with contextlib.suppress(Warning):  # never replace the user's exception
                    self.report.warn()
        return None

    def _install(self, installer: Installer) -> None:
        wrap = self._wrap_backward
        installer.patch(torch.Tensor, "backward", lambda original: wrap(original, "Tensor.backward"))
        # (Tensor.backward calls it: while a watched backward runs, calls pass straight through)
        self._nested_backward = installer.patch(torch.autograd, "backward",
                                                lambda original: wrap(original, "torch.autograd.backward"))
        installer.patch(torch.autograd, "grad", lambda original: wrap(original, "torch.autograd.grad"))
        installer.patch(torch.optim.Optimizer, "__init__", self._wrap_optimizer_init)
        installer.patch(torch.optim.Optimizer, "zero_grad", self._wrap_zero_grad)
        from torch.optim.optimizer import register_optimizer_step_pre_hook
        installer.hook(register_optimizer_step_pre_hook, self._step_pre_hook())
        if self._per_step_monitors:
            self._monitor = TrainingMonitor(self._monitor_handle())
        installer.set_aside(_NOT_TRACING)  # (until tracing starts)
        installer.add_undo(self._stop_tracing)
        # torch.compile: the tracing mode steps aside in compiled code, seen from outside instead
        # (compiled code that runs ends a steady cycle: its steps are found from outside)
        regions = CompiledRegions(installer, lambda: self.mode, self.provenance, self._internal_error,
                                  on_first_entry=lambda: self._guard(self._settle_steady))
        regions.install()
        self._regions = regions
        self._compiled_steps = CompiledSteps(regions.may_have_run, self.optimizers.items, self._on_compiled_step)
        if self.trace_steps > 0:
            self._start_tracing(self.trace_steps)

    def _monitor_handle(self) -> MonitorHandle:
        return MonitorHandle(
            installer=self.installer, provenance=self.provenance, optimizers=self.optimizers,
            schedule=self.schedule,
            events=self.events, tracing_mode_on=lambda: self.mode is not None,
            user_frame=self.source_map.user_frame, location=self.location, namespace=self.namespace,
            namespace_index=self._ns_index,
            namer=self._namer, optimizer_record=self._record, internal_error=self._internal_error,
            request_trace=self.request_trace, tell=self.tell, settle_steady=self._settle_steady)

    # --- tracing on/off -----------------------------------------------------------------------
    @property
    def tracing(self) -> bool:
        return self.mode is not None and not self.mode.paused

    def _start_tracing(self, backward_calls: int) -> None:
        self._settle_steady()
        self._trace_until = self.events.n_backward + backward_calls
        if self.mode is None:
            mode = ProvenanceMode(self.provenance, self._internal_error)
            if self.installer.push_mode(mode):
                self.mode = mode
                self.installer.put_aside_back(_NOT_TRACING)  # (steps lift the mode: `_lift_in_steps_of`)

    def request_trace(self, backward_calls: int = 1) -> None:
        """Trace the next ``backward_calls`` iterations in full (e.g. after a NaN appeared).

        Call it from a monitor's ``after_backward``; tracing starts with the next forward.
        """
        self._trace_requested = max(self._trace_requested, backward_calls)

    def _stop_tracing(self) -> None:
        mode, self.mode = self.mode, None
        self._lifted_for_step = False
        if self._step_post is not None:  # (never called while torch runs the post-step hooks)
            self._step_post.remove()
            self._step_post = None
        if mode is None:
            return
        self.installer.set_aside(_NOT_TRACING)
        mode.paused = True
        self.installer.remove_mode(mode)  # a mode the user pushed inside the cell stays
        forget_callers()

    # --- positions and names -------------------------------------------------------------------
    def _position(self):
        """Where the user's code is that called the caller of this."""
        return self._position_from(sys._getframe(2))

    def _position_from(self, frame):
        frame = self.source_map.user_frame(frame)
        return (frame.f_code, frame.f_lasti) if frame is not None else None

    def _callers(self, limit: int = 8) -> tuple:
        """Positions of the user's frames on the stack, innermost first."""
        out = []
        frame = self.source_map.user_frame(sys._getframe(2))
        while frame is not None and len(out) < limit:
            out.append((frame.f_code, frame.f_lasti))
            frame = self.source_map.user_frame(frame.f_back)
        return tuple(out)

    def location(self, position) -> Location | None:
        try:
            return self.source_map.location(position)
        except Exception:
            return None

    def namespace(self) -> dict[str, Any]:
        return self._namespace

    def _moment(self) -> tuple | None:
        """Where the user's code stands: its innermost frame's instruction and the counts of
        backward and step calls (in a loop the same line comes back with other counts)."""
        frame = self.source_map.user_frame(sys._getframe(1))
        if frame is None:
            return None
        events = self.events
        return frame.f_code, frame.f_lasti, events.n_backward, events.n_steps, len(events.optimizers)

    def _namer(self, frame=None, optimizers: list[tuple[Any, int]] | None = None) -> Namer:
        """Names in the notebook, then ``frame``'s, then as parameters of ``optimizers``
        (default: all of them). While the cell concludes, the notebook's names and the optimizers
        no longer change: the parts that conclude share one namer (the parameters of 1,000
        optimizers named once, not once by each of them), dropped when the cell is over."""
        if not (self._concluding and frame is None and optimizers is None):
            return self._new_namer(frame, optimizers)
        if self._final_namer is None:
            self._final_namer = self._new_namer(None, None)
        return self._final_namer

    def _new_namer(self, frame, optimizers: list[tuple[Any, int]] | None) -> Namer:
        # the notebook's names first: they are the ones assignments in the cells can be found by
        spaces = [self.namespace()]
        if frame is not None:
            spaces += [frame.f_locals, frame.f_globals]
        namer = Namer(*spaces, index=self._ns_index)
        namer.add_optimizers([(opt, f"optimizer#{key}") for opt, key in  # named when a name is asked for
                              (self.optimizers.items() if optimizers is None else optimizers)])
        return namer

    def _fact(self, t: torch.Tensor, namer: Namer) -> TensorFact:
        name = namer.name(t) or "<tensor>"
        node = self.provenance.nodes.get(t)
        created = made_non_leaf = None
        if node is not None and node.op != "<external>":
            if t.is_leaf:
                created = self.location(node.pos)
            else:
                made_non_leaf = self.location(node.pos)
                root = node
                while root.parents and root.op != "<external>":
                    root = root.parents[0]
                created = self.location(root.pos) if root.pos else None
                if made_non_leaf and created and made_non_leaf.line == created.line \
                        and created.end_column < made_non_leaf.end_column \
                        and made_non_leaf.column <= created.column:
                    # point at `.to(device)`, not the whole `torch.randn(...).to(device)`
                    gap = made_non_leaf.source[created.end_column - 1:]
                    start = created.end_column + len(gap) - len(gap.lstrip())
                    made_non_leaf = made_non_leaf.at(start, made_non_leaf.end_column)
        elif isinstance(t, torch.nn.Parameter) and self.provenance.made_position(t) is not None:
            created = self.location(self.provenance.made_position(t))
        elif name.isidentifier():
            created = self.source_map.find_assignment(name)
        elif "." in name and not name.startswith("<"):
            attribute = namer.user_attribute(t)  # `self.mask = nn.Parameter(...)` in the user's class
            created = (self.source_map.find_assignment(attribute, attribute=True) if attribute else None) \
                or self._module_assignment(name)
        owners, owner_keys, owner_locs = [], [], []
        for opt, key in self.optimizers.owners(t):
            owners.append(namer.name(opt) or f"optimizer#{key}")
            owner_keys.append(key)
            loc = self._opt_locations.get(key)
            if loc:
                owner_locs.append(loc)
        frozen_at = self.provenance.frozen_at.get(t)
        unregistered = namer.unregistered_in(t)
        if unregistered is not None:
            created = self.source_map.find_assignment(unregistered.rsplit(".", 1)[-1], attribute=True) or created
        return TensorFact(name=name, kind="parameter" if isinstance(t, torch.nn.Parameter) else "tensor",
                          frozen=self.location(frozen_at) if frozen_at is not None else None,
                          unregistered_in=unregistered,
                          requires_grad=t.requires_grad, is_leaf=t.is_leaf, created=created,
                          made_non_leaf=made_non_leaf, owners=owners, owner_keys=owner_keys,
                          owner_locations=owner_locs,
                          shape=tuple(t.shape))

    def _module_assignment(self, qualified: str) -> Location | None:
        """Where the module holding ``model.fc2.weight`` was made: ``self.fc2 = ...``, else
        ``model = ...``."""
        parts = qualified.split(".")
        for i in range(len(parts) - 2, 0, -1):  # `model.classifier.3.weight`: `.classifier = ...`
            owner = parts[i]
            if owner.isidentifier():
                found = self.source_map.find_assignment(owner, attribute=True, owners=tuple(parts[1:i]))
                if found is not None:
                    return found
        return self.source_map.find_assignment(parts[0]) if parts[0].isidentifier() else None

    # --- optimizers -------------------------------------------------------------------------------
    def _adopt_namespace_optimizers(self, roots: list[torch.Tensor], graph: BackwardGraph) -> None:
        """Optimizers from earlier cells that train what this loss is computed from (what it
        is computed from is worked out only when one of them is not adopted yet)."""
        self._ns_index.refresh(contents=False)  # (its optimizers only)
        candidates = [value for _, value in self._ns_index.optimizers() if value not in self.optimizers]
        if not candidates:
            return
        related = related_tensor_ids(roots, self.provenance, graph)
        for value in candidates:
            if any(id(p) in related for g in value.param_groups for p in g["params"]):
                self._adopt_optimizer(value)

    def _adopt_optimizer(self, opt) -> OptimizerRecord:
        """An optimizer built before this cell, met for the first time: registered, and recorded
        as it is now (a parameter created frozen in it is GW008's as in one built here)."""
        record = self._register_optimizer(opt, None)
        self._guard(self._lift_in_steps_of, opt)
        self._guard(lambda: self.events.adopted_optimizers.append(
            self._optimizer_event(opt, record.key, self.optimizers.locations.get(record.key), None)))
        return record

    def _register_optimizer(self, opt, location: Location | None) -> OptimizerRecord:
        if location is None:
            location = self._find_optimizer_assignment(opt)
        return self.optimizers.register(opt, location)

    def _find_optimizer_assignment(self, opt) -> Location | None:
        """Where an optimizer made in an earlier cell was built: ``opt = SGD(...)``, or, when
        that assignment calls a helper (``opt = build_opt(model)``), the newest ``SGD(...)`` call."""
        cls = type(opt).__name__
        self._ns_index.refresh(contents=False)
        for var, value in self._ns_index.optimizers():
            if value is opt and not var.startswith("_"):
                found = self.source_map.find_assignment(var)
                if found is not None and f"{cls}(" not in found.text:
                    return self.source_map.find_call({cls}) or found
                return found
        return None

    def _wrap_optimizer_init(self, original):
        session = self

        @functools.wraps(original)
        def __init__(opt, params, *args, **kwargs):
            __tracebackhide__ = True
            if session._in_backward:
                return original(opt, params, *args, **kwargs)
            frame = session.source_map.user_frame(sys._getframe(1))
            position = (frame.f_code, frame.f_lasti) if frame is not None else None
            if not isinstance(params, (list, tuple, dict)) and not isinstance(params, torch.Tensor):
                params = list(params)  # a generator: keep it for both us and the optimizer
            mode = session.mode  # building an optimizer is no forward op: not traced
            lifted = mode is not None and session.installer.lift(mode)  # (inline: 1,000 optimizers)
            try:
                try:
                    original(opt, params, *args, **kwargs)
                finally:
                    if lifted:
                        session.installer.put_back(mode)
            except ValueError as exc:
                session._guard(session._on_optimizer_error, exc, params, position, frame)
                raise
            try:  # (`_guard`, inline: 1,000 optimizers built in a cell)
                with (DisableTorchFunction() if not dispatch_depth() else own_work()):
                    session._on_optimizer(opt, position, frame)
            except Exception as exc:
                session._internal_error(exc)
        return __init__

    def _on_optimizer(self, opt, position, frame) -> None:
        if self._steady is not None:
            self._settle_steady()  # (its counters start from the session's)
        if type(opt) not in self._optimizer_classes:  # (its step() looked at once per class)
            self._optimizer_classes.add(type(opt))
            self._lift_in_steps_of(opt)
        location = self.location(position)
        key = self.optimizers.register(opt, location).key if location is not None \
            else self._register_optimizer(opt, None).key
        self.events.optimizers.append(self._optimizer_event(opt, key, location, frame))

    def _optimizer_event(self, opt, key: int, location: Location | None, frame) -> OptimizerEvent:
        """The optimizer as it is now. Its parameters' facts (names, where made) are what a
        frozen or non-leaf parameter is reported with; with every parameter a trainable leaf
        no rule reads them, and none are made (1,000 optimizers: naming them cost more than
        the cell). Its own name is found after the cell (`_name_new_optimizers`)."""
        if not [p for g in opt.param_groups for p in g["params"][:512] if not p.requires_grad or not p.is_leaf]:
            return OptimizerEvent(key=key, name=None, location=location, params=[])
        groups = [g["params"][:512] for g in opt.param_groups]
        # its parameters are named by the optimizers that hold them, not by all optimizers
        owners = {k: o for params in groups for p in params for o, k in self.optimizers.owners(p)}
        namer = self._namer(frame, [(o, k) for k, o in owners.items()])
        facts = [self._fact(p, namer) for params in groups for p in params]
        self._name_reached(frame=frame)  # (names compared with theirs)
        return OptimizerEvent(key=key, name=namer.name(opt), location=location, params=facts)

    def _on_optimizer_error(self, exc, params, position, frame) -> None:
        tensors = []
        for item in (params if isinstance(params, (list, tuple)) else [params]):
            if isinstance(item, dict):
                item = item.get("params", [])
            tensors.extend(item if isinstance(item, (list, tuple)) else [item])
        namer = self._namer(frame)
        facts = [self._fact(t, namer) for t in tensors[:512] if isinstance(t, torch.Tensor)]
        self._name_reached(namer)  # (names compared with theirs)
        self.events.optimizers.append(OptimizerEvent(
            key=0, name=None, location=self.location(position), params=facts,
            error=f"{type(exc).__name__}: {exc}"))

    def _wrap_zero_grad(self, original):
        session = self
        installer = self.installer
        rows = self.optimizers.rows_by_id
        get_frame = sys._getframe

        @functools.wraps(original)
        def zero_grad(opt, *args, **kwargs):
            __tracebackhide__ = True
            steady = session._steady  # (a steady cycle's zero_grad(): nothing to do but count it)
            if steady is not None and steady.expect == ZERO_GRAD and steady.ref() is opt:
                steady.expect = BACKWARD
                return original(opt, *args, **kwargs)
            return full(opt, args, kwargs)

        def full(opt, args, kwargs):
            __tracebackhide__ = True
            if session._steady is not None:
                session._guard(session._settle_steady)
            # every other step: the work inline, no frame of ours between here and the monitor
            try:
                with (DisableTorchFunction() if not dispatch_depth() else own_work()):
                    if session._lifted_for_step:
                        session._put_back_after_step()
                    regions = session._regions
                    if regions is not None and regions.entered:
                        session._compiled_steps.catch_up()
                    record = rows.get(id(opt))
                    if record is None or record.ref() is not opt:
                        record = session._record(opt)
                    record.calls_at_step_or_zero_grad = n = session.events.n_backward
                    session._last_zero_grad = (record.key, n)
                    monitor = session._monitor
                    if monitor is not None:  # (a walk to the user's frame starts at the call of zero_grad())
                        monitor.on_zero_grad(opt, record, get_frame(2))
            except Exception as exc:
                session._internal_error(exc)
            mode = session.mode  # clearing gradients is no forward op: not traced
            if mode is None or not installer.lift(mode):  # (lifted inline: 1,000 optimizers while tracing)
                return original(opt, *args, **kwargs)
            try:
                return original(opt, *args, **kwargs)
            finally:
                installer.put_back(mode)
        return zero_grad

    def _lift_in_steps_of(self, opt) -> None:
        """While tracing, ``opt``'s step() runs without the tracing mode from its start: the
        profiling marks torch puts around every step() (before the pre-step hooks) cost more
        with a mode on the stack than a small plain step (1,000 optimizers stepping). The
        class that defines step() is patched once, set aside while not tracing (no call more
        per step) and while compiled code runs (dynamo sees torch's own step())."""
        owner = next((c for c in type(opt).__mro__ if "step" in c.__dict__), None)
        if owner is None or owner is torch.optim.Optimizer or owner in self._step_classes \
                or not isinstance(owner.__dict__["step"], types.FunctionType):  # (a plain method only)
            return
        self._step_classes.add(owner)
        # (torch's own step(): nothing of the user's runs between its wrapper and the pre-hook)
        torch_own = owner.__module__.startswith("torch.")
        self.installer.patch(owner, "step", lambda original: self._wrap_step(original, torch_own),
                             can_set_aside=True)

    def _wrap_step(self, original, torch_own: bool):
        session = self
        installer = self.installer
        get_frame = sys._getframe

        @functools.wraps(original)
        def step(opt, *args, **kwargs):
            __tracebackhide__ = True
            mode = session.mode
            lifted = False
            if mode is not None and not session._lifted_for_step:
                try:
                    # as `_on_step` would lift it: no closure (one runs the forward inside
                    # step()), not a differentiable step (its ops are the user's graph)
                    closure = args[0] if args else kwargs.get("closure")
                    lifted = closure is None and not opt.defaults.get("differentiable") and installer.lift(mode)
                except Exception as exc:
                    session._internal_error(exc)
            if not lifted:
                return original(opt, *args, **kwargs)
            session._lifted_for_step = True  # (`_on_step` lifts nothing more)
            if torch_own:  # the pre-hook walks to the user's frame from the caller of this call
                session._step_caller = get_frame(1)
            try:
                return original(opt, *args, **kwargs)
            finally:
                session._step_caller = None  # (no frame kept)
                # back unless put back already (a zero_grad() or backward() inside the step)
                # or tracing ended meanwhile
                if session._lifted_for_step:
                    session._lifted_for_step = False
                    if session.mode is mode:
                        installer.put_back(mode)
        return step

    def _record(self, opt) -> OptimizerRecord:
        """The optimizer's row of the table (one built before this cell is adopted now)."""
        record = self.optimizers.record(opt)
        if record is None:
            record = self._adopt_optimizer(opt)
        return record

    def _mark_consumers(self, key: int, since: int) -> None:
        """This optimizer steps with the gradients of the backward() calls since its last
        step or zero_grad(): it consumes those of them that reached its parameters."""
        # (every optimizer's first step after a traced backward: 1,000 of them, work per step
        # bounded by the traced backward() calls, not by the optimizers that stepped before)
        tracing_for_it = self._trace_for == key
        saw = False  # a traced backward() reached this optimizer's parameters, or found their cut
        n_backward, consumed = self.events.n_backward, self._consumed
        for event in reversed(self.events.backwards):
            if event.index <= since:
                break
            flow = event.flow
            reached = key in event.reached_optimizers
            if tracing_for_it and flow is not None and (reached or any(
                    key in f.owner_keys and any(f.name in c.cut_off for c in flow.cuts) for f in flow.unreached)):
                saw = True
            # it consumes what it reached, and the backward() right before it (a G step's
            # backward reaches only D through a detach, but it is G's step)
            if (reached or event.index == n_backward) and (event.index, key) not in consumed:
                consumed.add((event.index, key))
                event.consumers.append(key)
                if flow is not None:
                    self._fed_traced.add(key)
        if tracing_for_it and saw:
            self._trace_for = None  # seen what this optimizer's step is fed by
            self._stop_tracing()

    def _lift_for_step(self) -> None:
        """While tracing: the optimizer's own ops are not the user's forward (no closure runs
        one inside this step, and a non-differentiable step runs under no_grad), so step() runs
        without the tracing mode, at the cost of a plain step (1,000 optimizers stepping in a
        traced iteration cost 1,000 plain steps). A post-step hook puts the mode back."""
        from torch.optim.optimizer import register_optimizer_step_post_hook

        if self.installer.lift(self.mode):
            self._lifted_for_step = True
            if self._step_post is None:  # (from a pre-hook: torch is not iterating the post hooks)
                self._step_post = self.installer.hook(register_optimizer_step_post_hook, self._after_step_hook())

    def _after_step_hook(self):
        session = self

        def step_post_hook(opt, args, kwargs):
            try:
                if session._lifted_for_step:  # (`_put_back_after_step`, inline: every traced step)
                    session._lifted_for_step = False
                    mode = session.mode
                    if mode is not None:
                        session.installer.put_back(mode)
            except Exception as exc:
                session._internal_error(exc)
        return step_post_hook

    def _put_back_after_step(self) -> None:
        """The tracing mode back on the stack after a step() that ran without it (also when
        that step raised and no post-step hook ran: at the next backward or zero_grad)."""
        if self._lifted_for_step:
            self._lifted_for_step = False
            if self.mode is not None:
                self.installer.put_back(self.mode)

    def _on_compiled_step(self, opt) -> None:
        """A step that compiled code ran (found by `CompiledSteps`), as the step hook sees one."""
        self._on_step(opt, (opt,), {})

    def _step_pre_hook(self):
        """The step pre-hook: a steady cycle's step counts itself in this small frame; the
        others take `_on_step`. (Run on most steps of a long loop, where what torch's step
        leaves in the caches is cold: the call of a large function costs more than the count.)"""
        session = self
        on_step = self._on_step
        due_in_cycle = self._due_in_cycle

        def step_pre_hook(opt, args, kwargs):
            steady = session._steady
            if steady is not None and steady.expect == STEP and steady.ref() is opt and len(args) == 1 and not kwargs:
                step = steady.next
                if step != steady.due:
                    steady.expect = ZERO_GRAD
                    steady.next = step + 1
                    return None
                # (sampled work under the user's mode: `on_step` takes it, in `own_work`)
                if not dispatch_depth() and not _torch_function_mode_on() and due_in_cycle(steady, opt, step):
                    return None
            return on_step(opt, args, kwargs)
        return step_pre_hook

    def _due_in_cycle(self, cycle: SteadyCycle, opt, step: int) -> bool:
        """A steady cycle's step with sampled work (gradient norms, the probe, the missing-
        gradient check): done here, as `on_step` would, unless a parameter has no gradient
        (False: this step takes the full path, which records it; so does the step after the
        cycle's last one). A NaN found asks for a trace: the cycle ends, the next backward() is
        traced. (Every eighth step of a long loop: the work's own cost, and little besides.)"""
        record = cycle.record
        if step > cycle.at + cycle.limit:
            return False  # (the step after its last one)
        try:
            checks, samples, probes, evals = cycle.work_at(step)
            if checks:
                with DisableTorchFunction():
                    if any(p.grad is None for g in opt.param_groups for p in g["params"]):
                        return False
        except Exception as exc:  # (the full path counts this step, behind its own guard)
            self._internal_error(exc)
            return False
        cycle.expect = ZERO_GRAD
        cycle.next = step + 1
        if checks:  # (what `_check_missing` counts for a check that finds nothing, inline: it is per step)
            record.checked_steps += 1
            self._missing[record.key] = 0
        monitor = self._monitor
        going = True
        if monitor is not None and (samples or probes or evals or step == cycle.stats_at):
            try:
                with DisableTorchFunction():
                    if step == cycle.stats_at:  # (every 32nd: see `TrainingMonitor.cycle_plan`)
                        losses, cycle.losses, cycle.handed, cycle.stats_at = cycle.losses, [], cycle.steps, 0
                        going, stride, stats_at, last = monitor.stats_in_cycle(record, losses, step)
                        cycle.restride(step, stride, stats_at, last)
                    if samples:  # (at the stride before a decision here, as `on_step`)
                        monitor.sample_in_cycle(record, opt, step)
                    if probes:
                        cycle.probe = monitor.probe_in_cycle(record, opt, cycle.probe, cycle.probed < 0)
                        cycle.probed = step - cycle.at  # (its steps, this one counted)
                    if evals:
                        going = monitor.eval_in_cycle(record, opt, step, cycle.backwards) and going
            except Exception as exc:
                self._internal_error(exc)
                going = False
        cycle.due = cycle.next_due()
        if self._trace_requested or not going:
            self._guard(self._settle_steady)
        return True

    def _on_step(self, opt, args, kwargs) -> tuple | None:
        """The step pre-hook's work (also for a step compiled code ran): every step but a
        steady cycle's, so the guard and `own_work` are inline, and a plain loop's step (no
        closure, not tracing) takes the shortest path."""
        if self._steady is not None:
            self._guard(self._settle_steady)
        try:
            with (DisableTorchFunction() if not dispatch_depth() else own_work()):
                record = self.optimizers.rows_by_id.get(id(opt))
                if record is None or record.ref() is not opt:
                    record = self._record(opt)
                key = record.key
                regions = self._regions
                if regions is not None and regions.entered:
                    self._compiled_steps.stepped(key)
                events = self.events
                events.n_steps += 1
                record.steps = step_number = record.steps + 1
                n = events.n_backward
                # optimizers that stepped after this backward() call and after the one before, or
                # that a traced one reached: with more than `checked_per_backward`, they take turns
                # for the sampled checks (1,000 optimizers: from the first of them to step after a
                # traced backward, not after 64 of them took the checks and more)
                if n != self._stepped_at:
                    self._stepped_at, self._stepped_before, self._stepped = n, self._stepped, 1
                    last = events.backwards[-1] if events.backwards else None
                    self._fed = len(last.reached_optimizers) if last is not None and last.index == n else 0
                else:
                    self._stepped += 1
                schedule = self.schedule
                stepping = max(self._stepped, self._stepped_before, self._fed)
                if stepping > schedule.checked_per_backward:
                    record.thinned = thinned = schedule.thinned(stepping, key, n)
                else:
                    record.thinned = thinned = False
                tracing = self.mode is not None
                frame = None
                if tracing:  # where each optimizer steps (explains version errors)
                    # (`_position`, inline; from the call of torch's step() that the step wrapper
                    # saw, without the frames of torch's own between it and this hook)
                    start, self._step_caller = self._step_caller, None
                    frame = self.source_map.user_frame(start or sys._getframe(1))
                    self.step_positions[key] = (frame.f_code, frame.f_lasti) if frame is not None else None
                last = record.calls_at_step_or_zero_grad
                since = n - last
                record.calls_at_step_or_zero_grad = n
                if events.backwards and events.backwards[-1].index > last:  # only while traced events are new
                    self._mark_consumers(key, last)
                changed = closure = None
                if len(args) > 1 or kwargs:
                    closure = args[1] if len(args) > 1 else kwargs.get("closure")  # (args[0] is the optimizer)
                if closure is not None and callable(closure):
                    # the closure computes this step's gradients inside step() (LBFGS, SAM, Lightning):
                    # `.grad` holds the previous step's (or nothing) now; check them after the closure
                    checked = self._check_after(closure, opt, record, n)
                    changed = ((opt, checked, *args[2:]), kwargs) if len(args) > 1 \
                        else (args, {**kwargs, "closure": checked})
                elif not since or not (thinned or step_number > schedule.quiet_after
                                       and step_number % schedule.busy_every) \
                        and schedule.checks_missing(step_number, since):
                    self._check_missing(opt, record, since)
                arm = False
                if tracing and closure is None and not self._lifted_for_step \
                        and not opt.defaults.get("differentiable"):
                    self._lift_for_step()
                else:
                    arm = since == 1 and changed is None and self._last_zero_grad == (key, n - 1)
                if self._monitor is not None:
                    # (tracing: the mode stays on while step() runs, its ops are seen)
                    self._monitor.on_step(opt, record, closure, tracing and not self._lifted_for_step, frame)
                if arm:
                    self._arm_steady(record, n)
                return changed  # as a step pre-hook's (args, kwargs): step() calls the checking closure
        except Exception as exc:
            self._internal_error(exc)
            return None

    # --- the steady cycle (install/steady_cycle.py) ------------------------------------------------
    def _arm_steady(self, record: OptimizerRecord, n: int) -> None:
        """At a step that followed one zero_grad() and one backward() of this optimizer alone, not
        tracing: a steady cycle for its next steps that need nothing but counting, if any do."""
        schedule = self.schedule
        steps = record.steps
        regions = self._regions
        if not schedule.steady_cycles or steps < schedule.cycle_after or record.thinned or self._stepped != 1 \
                or self._stepped_before > 1 or self._trace_requested or self._trace_for is not None \
                or self._lifted_for_step or (regions is not None and regions.entered):
            return
        # up to the next multiple of `cycle_every`: the probes, checks and samples of the steps
        # before it, the cycle takes
        left, stride, stats_at = schedule.cycle_every - steps % schedule.cycle_every - 1, 0, 0
        if left > 0 and self._monitor is not None:
            quiet, stride, stats_at = self._monitor.cycle_plan(record)
            left = min(left, quiet)
        if left > 0:
            self._steady = SteadyCycle(record, left, n, schedule, stride, monitored=self._monitor is not None,
                                       stats_at=stats_at if stats_at <= steps + left else 0)

    def _settle_steady(self) -> None:
        """The calls the steady cycle took, counted as the per-step hooks count them; it ends."""
        cycle, self._steady = self._steady, None
        if cycle is None:
            return
        record, events = cycle.record, self.events
        events.n_backward += cycle.backwards
        at_step, at_zero_grad = cycle.step_counts()
        steps = cycle.steps
        if at_step is not None:
            events.n_steps += steps
            record.steps += steps
            # each step was the only one after its backward() (see `_on_step`)
            self._stepped_at, self._stepped_before, self._stepped, self._fed = at_step, 1, 1, 0
        if at_zero_grad is not None:  # (it took a call: each of its steps follows a zero_grad())
            record.calls_at_step_or_zero_grad = cycle.n_backward + steps  # (the last of them)
            self._last_zero_grad = (record.key, at_zero_grad)
        if self._monitor is not None:
            self._monitor.after_quiet(record, cycle)

    def _check_after(self, closure, opt, record: OptimizerRecord, n_before: int):
        """``closure``, checking the gradients it computed the first time it returns (LBFGS calls
        it several times per step); its results and exceptions are the closure's own."""
        session = self
        done: list[bool] = []

        @functools.wraps(closure)
        def closure_then_check(*args, **kwargs):
            __tracebackhide__ = True
            result = closure(*args, **kwargs)
            if not done:
                done.append(True)
                n = session.events.n_backward
                record.calls_at_step_or_zero_grad = n  # the closure's backward calls are this step's
                since = n - n_before
                if session.schedule.checks_missing(record.steps, since):
                    session._guard(session._check_missing, opt, record, since)
            return result
        return closure_then_check

    def _check_missing(self, opt, record: OptimizerRecord, since: int) -> None:
        """The parameters of ``opt`` that its step finds without a gradient (on sampled steps)."""
        events = self.events
        key = record.key
        missing = [p for g in opt.param_groups for p in g["params"] if p.grad is None]
        record.checked_steps += 1
        record.steps_missing += bool(missing)
        before, self._missing[key] = self._missing.get(key, 0), len(missing)
        if missing and since and self._retraced.count(key) < 2 and \
                (key not in self._fed_traced or len(missing) > before):
            # no traced backward fed this optimizer yet (e.g. a GAN's G step comes after
            # several D steps), or more of its parameters lost their gradient (a layer
            # replaced mid-cell): trace until its next step to see where gradients stop
            self._retraced.append(key)
            self._fed_traced.discard(key)
            self._trace_for = key
            if self.mode is None:  # from now on: the next forward may feed this optimizer
                self._start_tracing(self.schedule.retrace_limit)
        if (missing or since == 0) and len(events.steps) < _MAX_STEP_EVENTS:
            namer = self._namer(self.source_map.user_frame(sys._getframe(1)))
            if missing:
                self._name_reached(namer)  # (names compared with theirs)
            events.steps.append(StepEvent(
                optimizer=key, name=namer.name(opt), location=self.location(self._position()),
                backwards_since_step=since, without_grad=[self._fact(p, namer) for p in missing[:64]],
                n_params=sum(len(g["params"]) for g in opt.param_groups)))

    # --- backward --------------------------------------------------------------------------------
    def _wrap_backward(self, original, api: str):
        session = self
        guard = self._guard
        not_grad = api != "torch.autograd.grad"
        quiet_api = api == "Tensor.backward"  # (`loss.backward()`: the one a steady cycle takes)
        Tensor = torch.Tensor

        @functools.wraps(original)
        def backward(*args, **kwargs):
            __tracebackhide__ = True
            if session._in_backward:
                return original(*args, **kwargs)
            steady = session._steady
            if steady is not None:
                # a steady cycle's backward(): only counted, its loss kept, in this small frame
                # (most steps of a long loop; the others take `full`). `loss.backward()` of a
                # plain tensor and no torch-function mode, so that reading `.data` (no op: no
                # dispatch mode sees it) reaches no Python code of the user's; no GradScaler.
                # Whether it is a scalar loss with values is asked when the cycle settles
                # (`GradStats.after_quiet`): a root that is none is not kept, as `on_loss` does
                if steady.expect == BACKWARD and quiet_api and len(args) == 1 and not kwargs \
                        and type(root := args[0]) is Tensor and not _torch_function_mode_on() \
                        and ((monitor := session._monitor) is None or monitor.scaled is None):
                    if monitor is not None:
                        steady.losses.append(root.data)
                    steady.expect = STEP
                    nested = session._nested_backward
                    session._in_backward = True
                    if nested is not None:
                        nested.passing = True
                    try:  # (not tracing: a cycle ends before tracing starts)
                        return original(*args, **kwargs)
                    except BaseException as exc:
                        failed(nested, None, args, kwargs, exc)
                        raise
                    finally:
                        session._in_backward = False
                        if nested is not None:
                            nested.passing = False
            return full(args, kwargs)

        def failed(nested, call, args, kwargs, exc) -> None:
            """backward() raised: out of it first, then the steady cycle's calls counted (the
            cycle's own, or one armed meanwhile), then the error explained."""
            session._in_backward = False
            if nested is not None:
                nested.passing = False
            guard(session._settle_steady)
            guard(session._after_backward, call, api, args, kwargs, exc)

        def full(args, kwargs):
            __tracebackhide__ = True
            if session._steady is not None:
                guard(session._settle_steady)
            nested = session._nested_backward
            session._in_backward = True
            if nested is not None:
                nested.passing = True
            try:
                call = None
                try:
                    with (DisableTorchFunction() if not dispatch_depth() else own_work()):
                        # (`_before_backward`'s per-step part inline: every step)
                        if session._lifted_for_step:
                            session._put_back_after_step()
                        regions = session._regions
                        if regions is not None and regions.entered:  # (a step compiled code ran)
                            session._compiled_steps.catch_up()
                        session.events.n_backward += 1
                        first = args[0] if args else None
                        # (`loss.backward()`, every step: no call to find its root)
                        roots = [first] if type(first) is torch.Tensor else session._roots(api, args, kwargs)
                        monitor = session._monitor
                        if not_grad and monitor is not None:
                            # (gradients of inputs, as in penalties, are no training loss)
                            monitor.on_backward(roots, session.mode is not None)
                        mode = session.mode
                        # the per-step fast path ends here; autograd.grad() computes gradients
                        # of inputs (penalties, physics losses), not the training step's
                        # parameter gradients: not analysed
                        call = session._before_backward(roots) \
                            if mode is not None and not mode.paused and roots and not_grad else None
                except Exception as err:
                    session._internal_error(err)
                    call = None
                try:
                    if session.mode is None:  # the common case once tracing is over
                        result = original(*args, **kwargs)
                    else:
                        # off the stack while autograd runs: backward() then takes the same
                        # path (and gives the same traceback) as without gradwatch
                        with session.installer.lifted(session.mode):
                            result = original(*args, **kwargs)
                except BaseException as exc:
                    failed(nested, call, args, kwargs, exc)
                    raise
                monitor = session._monitor
                if call is not None or session.mode is not None or session._trace_requested \
                        or (monitor is not None and monitor.wants_after_backward):  # work after it? (reads only)
                    guard(session._after_backward, call, api, args, kwargs, None)
                return result
            finally:
                session._in_backward = False
                if nested is not None:
                    nested.passing = False
        return backward

    @staticmethod
    def _roots(api: str, args, kwargs) -> list[torch.Tensor]:
        if api == "Tensor.backward":
            first = args[0] if args else kwargs.get("self")
        elif api == "torch.autograd.grad":
            first = args[0] if args else kwargs.get("outputs")
        else:
            first = args[0] if args else kwargs.get("tensors")
        if isinstance(first, torch.Tensor):
            return [first]
        return [t for t in (first or ()) if isinstance(t, torch.Tensor)]

    def _before_backward(self, roots: list[torch.Tensor]) -> BackwardEvent:
        """A traced backward() (of a training loss) that is about to run: its flow analysed."""
        # paused: the walks below make tens of thousands of short-lived records (a model of
        # 10,000 parameter tensors: ~100,000), and a collection while they live keeps them
        # as survivors and brings the next full collection (0.17 s there) closer; paused,
        # the traced step took 250 ms where it took 290 (plain: 165 ms)
        with collection_paused():
            frame = self.source_map.user_frame(sys._getframe(3))  # (from the wrapper's caller)
            position = (frame.f_code, frame.f_lasti) if frame is not None else None
            index = self.events.n_backward
            graph = BackwardGraph(roots, self.provenance)  # each graph walked once for the analyses below
            self._adopt_namespace_optimizers(roots, graph)
            live = self.optimizers.items()  # (listed once for all that follows: 1,000 optimizers)
            self.optimizers.reindex(live)  # (parameter groups added since): once per traced backward
            event = BackwardEvent(index=index, location=self.location(position),
                                  steps_before=self.events.n_steps)
            namer = self._namer(frame, live)
            trainables, owned = self._trainables(namer, frame, live)
            analyzer = FlowAnalyzer(self.provenance, self.location, lambda t: self._fact(t, namer),
                                    namer.name, self._enclosing_no_grad, self._no_grad_decorator,
                                    self.optimizers.owner_keys_of, namer.bound_name)
            event.flow = analyzer.analyze(roots, trainables, bool(live), owned, graph)
            self._reached_named_later(event.flow, analyzer.reached_trainables, namer, frame)
            event.reached_optimizers = self.optimizers.owner_keys(analyzer.reached_ids)
            if len(self.events.backwards) < _MAX_STEP_EVENTS:
                self.events.backwards.append(event)
            if not self._inputs:
                self._inputs = [(weakref.ref(t), node.pos, target)
                                for t, node, target in data_leaves(roots, self.provenance, graph=graph)]
            return event

    def _reached_named_later(self, flow: Flow, tensors: list[torch.Tensor], namer: Namer, frame) -> None:
        """`Flow.reached`: the names of the trainables a traced backward reaches. They are
        compared only with the names of other findings (a tensor cut off here that another
        backward trains, a parameter found without a gradient later), so a clean flow's are
        worked out when such a finding is made, or after the cell if one was made, else never:
        naming a model of 10,000 parameters is not paid in the traced step. In a function (its
        own names, gone after it returns), or when this flow has findings, they are named now."""
        if flow.unreached or flow.cuts or (frame is not None and frame.f_locals is not frame.f_globals):
            self._name_reached(namer)
            flow.reached = [namer.name(t) or "<tensor>" for t in tensors]
            return
        nodes = self.provenance.nodes.by_id  # (a traced parameter's node is a weak reference to it)
        refs = []
        for t in tensors:
            node = nodes.get(id(t))
            refs.append(node if node is not None and node() is t else weakref.ref(t))
        self._unnamed_flows.append((flow, refs))

    def _name_reached_if_compared(self) -> None:
        """After the cell: the flows left unnamed get their names only if a finding's names are
        compared with them (GW001, GW002); a clean cell's flows keep `Flow.reached` empty (the
        parameters of 1,000 optimizers, or a model's 10,000, named for nothing)."""
        events = self.events
        if any(e.flow is not None and (e.flow.unreached or e.flow.cuts) for e in events.backwards) \
                or any(step.without_grad for step in events.steps) or any(opt.params for opt in events.optimizers):
            self._name_reached()
        else:
            self._unnamed_flows = []

    def _name_reached(self, namer: Namer | None = None, frame=None) -> None:
        """The reached trainables of the flows left unnamed, named now by ``namer`` (default:
        the names of the notebook and of ``frame``); a tensor gone since has no name to compare."""
        if not self._unnamed_flows:
            return
        namer = namer or self._namer(frame)
        pending, self._unnamed_flows = self._unnamed_flows, []
        for flow, refs in pending:
            flow.reached = [namer.name(t) or "<tensor>" for t in (ref() for ref in refs) if t is not None]

    def _trainables(self, namer: Namer, frame, live: list[tuple[Any, int]]) -> tuple[list[torch.Tensor], set[int]]:
        """The tensors the live optimizers hold (their ids: ``owned``), then the tensors bound to
        the names the cell trains."""
        seen: dict[int, torch.Tensor] = {}
        for opt, _ in live:
            for g in opt.param_groups:
                for p in g["params"]:
                    seen.setdefault(id(p), p)
        owned = set(seen)
        spaces = [frame.f_locals, frame.f_globals] if frame is not None else []
        spaces.append(self.namespace())
        for name in self._trained_names:
            for ns in spaces:
                value = ns.get(name)
                if isinstance(value, torch.Tensor):
                    seen.setdefault(id(value), value)
                    break
                if isinstance(value, (list, tuple)) and value and len(value) <= 1024 \
                        and all(isinstance(v, torch.Tensor) for v in value):
                    for v in value:
                        seen.setdefault(id(v), v)
                    break
        return list(seen.values()), owned

    def _enclosing_no_grad(self, location: Location) -> Location | None:
        return self.source_map.enclosing_with(location, _NO_GRAD_NAMES)

    def _no_grad_decorator(self, location: Location) -> Location | None:
        return self.source_map.enclosing_decorator(location, _NO_GRAD_NAMES)

    def _after_backward(self, call: BackwardEvent | None, api: str, args, kwargs, exc) -> None:
        if exc is not None:
            if call is None:
                call = BackwardEvent(index=self.events.n_backward, location=self.location(self._position()),
                                     steps_before=self.events.n_steps)
            if call not in self.events.backwards and len(self.events.backwards) < _MAX_STEP_EVENTS:
                self.events.backwards.append(call)
            frame = self.source_map.user_frame(sys._getframe(2))
            explain.explain_error(self._explain_helpers(), call, self._roots(api, args, kwargs), exc, frame)
        if self.tracing:
            roots = self._roots(api, args, kwargs)
            self.provenance.previous_roots = [n for n in map(self.provenance.nodes.get, roots) if n]
            self.provenance.step += 1
            if api == "torch.autograd.grad" and self._grad_calls_traced < _GRAD_CALLS_FREE:
                self._grad_calls_traced += 1  # a meta-learning inner step: trace the outer backward too
                self._trace_until += 1
            if self.events.n_backward >= self._trace_until:
                self._trace_for = None
                self._stop_tracing()
        if self._monitor is not None:
            self._monitor.after_backward()
        requested, self._trace_requested = self._trace_requested, 0
        if requested and self.mode is None and not self.installer.closed:
            self._start_tracing(requested)

    def _explain_helpers(self) -> explain.Helpers:
        def stepped() -> list[tuple[Any, int, Any]]:
            return [(opt, key, self.step_positions[key]) for opt, key in self.optimizers.items()
                    if key in self.step_positions]
        return explain.Helpers(provenance=self.provenance, location=self.location, namer=self._namer,
                               find_assignment=self.source_map.find_assignment,
                               find_unreduced_loss=self.source_map.find_unreduced_loss, stepped=stepped)

    # --- monitors (per-step checks) and internal errors -------------------------------------------
    def _finish_monitors(self) -> None:
        self._guard(self._compiled_steps.finish)  # a last step that compiled code ran
        if self._monitor is not None:
            try:
                self._monitor.finish(self.events)
            except Exception as exc:
                self._internal_error(exc)

    def _guard(self, fn, *args, **kwargs):
        """Run gradwatch's own code so that its faults never reach the user's program (and its
        tensor ops never reach the user's torch function / dispatch modes)."""
        try:
            with own_work():
                return fn(*args, **kwargs)
        except Exception as exc:
            self._internal_error(exc)
            return None

    def _internal_error(self, exc: BaseException) -> None:
        if len(self.events.internal_errors) < 5:
            tb = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
            where = f" at {tb[0].filename.rsplit('/', 1)[-1]}:{tb[0].lineno}" if tb else ""
            self.events.internal_errors.append(f"{type(exc).__name__}: {exc}{where}")

    # --- conclusion ------------------------------------------------------------------------------
    def _collect_grad_reads(self) -> None:
        reads, self.provenance.grad_reads = self.provenance.grad_reads, []
        if not reads:
            return
        namer = self._namer()
        for position, ref in reads:
            t = ref()
            if t is not None:
                self.events.grad_reads.append(GradReadEvent(self.location(position), self._fact(t, namer)))

    def _measure_inputs(self) -> None:
        """The data's scale, when the loss diverged, went NaN or stayed flat: unscaled features
        are the usual cause (one host read per input, once per cell)."""
        from .rules import registry

        if not registry.wants_input_scales(self.events):
            return
        namer = self._namer()
        for ref, pos, target in self._inputs:
            t = ref()
            if t is None:
                continue
            name, created = namer.name(t) or "<tensor>", self.location(pos) if pos is not None else None
            if created is None:
                # the newest of its names' assignments (`features = ages` after `ages = ...`)
                bound = [var for var, value in list(self.namespace().items()) if value is t and var.isidentifier()]
                found = [(loc, var) for var in bound for loc in [self.source_map.find_assignment(var)] if loc]
                if found:
                    created, name = max(found, key=lambda f: (f[0].cell or 0, f[0].line))
            with torch.no_grad():
                finite = t[torch.isfinite(t)]
                max_abs = float(finite.abs().max()) if finite.numel() else float("inf")
            self.events.inputs.append(InputScale(name=name, created=created, max_abs=max_abs, target=target))

    def _explain_failure(self, exc: BaseException) -> None:
        from .trace import cell_error

        def fact(t: torch.Tensor, spaces: list[dict[str, Any]]) -> TensorFact:
            namer = Namer(self.namespace(), *spaces, index=self._ns_index)  # the notebook's qualified names first
            for opt, key in list(self.optimizers.items()):
                namer.add_optimizer_params(opt, namer.name(opt) or f"optimizer#{key}")
            return self._fact(t, namer)

        helpers = cell_error.Helpers(provenance=self.provenance, location=self.location,
                                     is_user_file=self.source_map.is_user_file, fact=fact,
                                     n_backward=lambda: self.events.n_backward)
        self.events.cell_failure = cell_error.explain(exc, helpers)

    def _name_new_optimizers(self) -> None:
        """An optimizer is named only after its constructor returns (`opt = SGD(...)`)."""
        names = {}
        if not any(event.name is None for event in self.events.optimizers):
            return
        self._ns_index.refresh(contents=False)
        for var, value in self._ns_index.optimizers():
            key = self.optimizers.get(value)
            if key is not None and not var.startswith("_"):
                names.setdefault(key, var)
        for event in self.events.optimizers:
            if event.name is None and event.key in names:
                event.name = names[event.key]
                for fact in event.params:
                    fact.owners = [names[event.key] if o == f"optimizer#{event.key}" else o
                                   for o in fact.owners]

    def _conclude(self, exc: BaseException | None) -> None:
        from .rules import registry

        self.events.cell_error = type(exc).__name__ if exc is not None else None
        self.events.optimizer_locations = dict(self._opt_locations)
        # (what GW006 reads, of the optimizers whose steps found a parameter without a gradient:
        # not a row for each of 1,000 optimizers)
        self.events.step_counts = {record.key: StepCounts(record.steps, record.checked_steps, record.steps_missing)
                                   for record in self.optimizers.records() if record.steps_missing}
        if exc is not None:
            self._guard(self._explain_failure, exc)
        self._guard(self._measure_inputs)
        self._guard(self._collect_grad_reads)
        self._guard(self._name_new_optimizers)
        try:
            diagnostics = registry.run(self.events, self.source_map, select=self.select,
                                       ignore=self.ignore)
        except Exception as err:
            self._internal_error(err)
            diagnostics = []
        for message in self.events.internal_errors[:1]:
            diagnostics.append(registry.internal_diagnostic(message))
        self.report.diagnostics = diagnostics
        # what --select/--ignore hid: "no problems found (2 ignored: GW001)"
        self.report.count_suppressed(self.events, self.source_map, select=self.select, ignore=self.ignore)
        if exc is not None and diagnostics and hasattr(exc, "add_note"):
            causes = [d for d in diagnostics if d.severity is Severity.ERROR] or diagnostics
            note = causes[0].note()
            if note not in getattr(exc, "__notes__", []):
                exc.add_note(note)


def _clear_active() -> None:
    _active.session = None


def current() -> Watch | None:
    return getattr(_active, "session", None)
