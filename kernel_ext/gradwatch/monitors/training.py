"""Per-step monitors: cheap checks that run on every step of a long training loop.

A monitor is told about backward calls, optimizer steps and ``zero_grad()`` calls, keeps
bounded state (on the device where it can, so that it never forces a host-device sync per
step), and adds typed measurements (``measurements.py``) to ``Events.measurements`` when the
cell ends. It decides nothing: the rule modules judge the measurements with their thresholds.

`TrainingMonitor` is the one monitor of the training-dynamics rules (GW101-GW115). It owns the
few patches these rules need (GradScaler, ``Module.train``, a step post-hook) and hands the
hooks to three parts, each in its own module:

* ``step_order.StepOrder``: the order of ``backward()``/``step()``/``zero_grad()`` per optimizer
  (pure Python counters and one "probe" gradient per optimizer), eval-mode modules;
* ``grad_stats.GradStats``: gradient norms (``torch._foreach_norm``) and losses kept on the
  device, reduced in blocks, read on the host only at the end of the cell (CUDA: through
  pinned memory and an event, never a sync);
* ``op_checks.OpChecks``: per-op checks that run only while provenance tracing is on (the first
  iterations, and again after a non-finite value was seen).
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from typing import Any

import torch

from ..install.installer import Installer
from ..install.monitor_handle import MonitorHandle
from ..trace.provenance import has_values, own_work
from ..install.optimizer_table import OptimizerRecord
from ..install.steady_cycle import SteadyCycle
from ..locate import Namer


_NULL = contextlib.nullcontext()
# `TrainingMonitor._frame_memo`: outside `on_step`/`on_zero_grad` (each walk on its own); inside
# one before anything asked for the user's frame, (_START, the frame a walk starts at, or None:
# the asker's); then the frame found
_NO_MEMO, _START = object(), object()
_NOT_WALKED = (_START, None)


class TrainingMonitor:
    """GW101-GW115: training dynamics at a cost that is small against a backward pass."""

    def __init__(self, session: MonitorHandle) -> None:
        self.session = session  # what it may use of the watch session
        from .op_checks import OpChecks
        from .grad_stats import GradStats
        from .step_order import StepOrder

        self.n_backward = 0
        self.in_scaler = 0  # >0 while GradScaler's own ops run (their infs are by design)
        self.in_step = False  # optimizer.step() runs: its ops are no forward ops
        self.step_call = None  # ... except a closure's, made away from this step() call (its position)
        self.scaled: tuple[weakref.ref, torch.Tensor] | None = None  # scaler.scale(loss) -> loss
        self.order = StepOrder(self)
        self.stats = GradStats(self)
        self.ops = OpChecks(self)
        self.local_names: dict[int, str] = {}  # names in the function that runs the loop
        self._locals_read: tuple[int, int, int] | None = None  # (frame id, code id, backward calls) read last
        self._frame_memo: Any = _NO_MEMO  # the user's frame of the hook call in progress (`user_frame`)
        # whether `after_backward` has work after this backward (the session skips it otherwise):
        # a plain attribute, read after every backward
        self.wants_after_backward = False
        self._install(session.installer)

    # --- helpers for the parts ----------------------------------------------------------------
    def record(self, optimizer: Any) -> OptimizerRecord:
        """The optimizer's row of the session's table (registered when first seen): its
        counters, and the parts' state for it."""
        return self.session.optimizer_record(optimizer)

    def position(self):
        """The user's code position that led here (a frame walk: only when needed)."""
        frame = self.user_frame(sys._getframe(1))
        return (frame.f_code, frame.f_lasti) if frame is not None else None

    def user_frame(self, frame: Any) -> Any:
        """The innermost user frame at or above ``frame``. Within one `on_step` or `on_zero_grad`
        call every part that asks gets the same frame (the one that called step() or
        zero_grad()), so it is walked to once per call: the first step of each of 1,000
        optimizers asked four times. The frame is not kept past the call."""
        memo = self._frame_memo
        if memo is _NO_MEMO:
            return self.session.user_frame(frame)
        if type(memo) is tuple:  # not walked yet
            memo = self._frame_memo = self.session.user_frame(memo[1] or frame)
        return memo

    def own_ops(self):
        """gradwatch's own torch ops must not be traced as the user's (nor cost a trace)."""
        if not self.session.tracing_mode_on():
            return _NULL
        return torch._C.DisableTorchFunction()

    def location(self, position):
        return self.session.location(position) if position is not None else None

    def guarded(self, fn):
        """``fn`` with gradwatch's own faults reported as internal errors, never raised."""
        session = self.session

        def call(*args, **kwargs):
            try:
                with own_work():  # its tensor ops stay unseen by the user's modes
                    return fn(*args, **kwargs)
            except Exception as exc:
                session.internal_error(exc)
                return None
        return call

    # --- patches --------------------------------------------------------------------------------
    def _install(self, installer: Installer) -> None:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        guard = self.guarded
        self._register_post = lambda: installer.hook(register_optimizer_step_post_hook, guard(self._after_step))
        self._post = None  # registered only while it has work (see on_step)
        self.closure_seen = False
        self.session.provenance.observers.append(self._observe)
        monitor = self
        try:
            from torch.amp import GradScaler
        except ImportError:  # pragma: no cover - old torch
            GradScaler = None
        if GradScaler is not None:
            scale, step = GradScaler.scale, GradScaler.step

            def scaled(scaler, outputs):
                guard(monitor.session.settle_steady)()  # (a scaled loss: the steady cycle takes none)
                monitor.in_scaler += 1
                try:
                    result = scale(scaler, outputs)
                finally:
                    monitor.in_scaler -= 1
                if isinstance(outputs, torch.Tensor) and isinstance(result, torch.Tensor):
                    monitor.scaled = (weakref.ref(result), outputs.detach())
                return result

            def scaler_step(scaler, optimizer, *args, **kwargs):
                guard(monitor.session.settle_steady)()
                guard(monitor.order.on_scaler_step)(optimizer)
                monitor.in_scaler += 1
                try:
                    return step(scaler, optimizer, *args, **kwargs)
                finally:
                    monitor.in_scaler -= 1

            installer.patch(GradScaler, "scale", lambda _original: scaled)
            installer.patch(GradScaler, "step", lambda _original: scaler_step)
        train = torch.nn.Module.train

        def module_train(module, mode=True):
            order = monitor.order
            if order._train_depth == 0:  # train() recurses into children: the user's call only
                guard(monitor.session.settle_steady)()  # (an eval-mode check may be due at the next step)
                guard(order.on_train)(module, mode)
            order._train_depth += 1
            try:
                return train(module, mode)
            finally:
                order._train_depth -= 1

        installer.patch(torch.nn.Module, "train", lambda _original: module_train)

    # --- session hooks ------------------------------------------------------------------------
    def on_backward(self, roots: list, tracing: bool) -> None:
        """A backward() that fills ``.grad`` (not ``torch.autograd.grad``, whose gradients of
        inputs, as in penalties, are no training step's); ``tracing``: the tracing mode is on."""
        self.n_backward += 1
        if self.ops.queue:  # (values the traced forward made, checked before anything changes them)
            self.ops.flush()
        if self.stats.deferred:  # gradient norms of the last steps, before this backward adds to them
            self.stats.settle()
        order = self.order
        if order.watching:
            order.on_backward()
            self.wants_after_backward = order.checking
        if len(roots) == 1:
            root = roots[0]
            if self.scaled is not None and self.scaled[0]() is root:
                root = self.scaled[1]  # the loss before `scaler.scale(loss)`: its scale is no trend
            if (type(root) is not torch.Tensor or root.is_meta) and not has_values(root):
                pass  # a meta model or a FakeTensor: no values to follow
            elif not tracing:
                self.stats.on_loss(root)
            else:
                with torch._C.DisableTorchFunction():
                    self.stats.on_loss(root)

    def after_backward(self) -> None:
        if self.order.checking:
            self.order.after_backward()
        self.wants_after_backward = False

    def on_step(self, optimizer: Any, record: OptimizerRecord, closure: Any, tracing: bool,
                frame: Any = None) -> None:
        """(the session counted this step in ``record.steps`` already; ``closure``: the one
        passed to step(), or None; ``tracing``: the tracing mode stays on while step() runs (a
        closure's forward, a differentiable step; not lifted as for a plain step); ``frame``: the user's
        frame that called step(), if the session walked to it already)"""
        outer, self._frame_memo = self._frame_memo, _NOT_WALKED if frame is None else frame  # (see `user_frame`)
        try:
            # The post-step hook confirms suspicions, sees LBFGS-style closures (backward inside
            # step) and marks the optimizer's own ops while tracing; a plain loop does not pay for it.
            if self.ops.queue:  # (before step() changes the parameters)
                self.ops.flush()
            if closure is not None:
                self.closure_seen = True
            # a closure runs the forward inside step() (LBFGS, SAM, Lightning): while tracing, the
            # ops whose user frame is not the step() call are the closure's and observed
            self.step_call = self.position() if closure is not None and tracing else None
            if record.steps == 1:
                self._remember_local_names()
            order = self.order
            order.on_step(optimizer, record)
            if not record.has_values:  # (once it has, it keeps them: not asked again every step)
                first = None
                for group in optimizer.param_groups:  # (no generator: the first steps of 1,000 optimizers)
                    if group["params"]:
                        first = group["params"][0]
                        break
                record.has_values = first is None or has_values(first)
            if not record.has_values:
                pass  # a meta model or FakeTensors: no gradient values to follow
            elif not tracing:
                self.stats.on_step(optimizer, record)
            else:
                with torch._C.DisableTorchFunction():
                    self.stats.on_step(optimizer, record)
            # (a pre-hook: torch is not iterating over the post hooks, adding or removing is safe)
            need = order._pending is not None or self.closure_seen or tracing
            if need and self._post is None:
                self._post = self._register_post()
            elif not need and self._post is not None:
                self._post.remove()
                self._post = None
            self.in_step = self._post is not None
        finally:
            self._frame_memo = outer  # (no frame kept past the call)

    def cycle_plan(self, record: OptimizerRecord) -> tuple[int, int, int]:
        """How many of this optimizer's next steps need nothing of the monitor but counting (and
        their samples of gradient norms), if the loop goes on in the steady cycle (zero_grad(),
        backward() of a scalar loss, step(); see install/steady_cycle.py): 0 if the next one
        does; and the stride of those samples (0: none)."""
        if self.ops.queue or self.stats.deferred or self.scaled is not None or self._post is not None \
                or self.closure_seen or self.in_step or self.wants_after_backward or not record.has_values:
            return 0, 0, 0
        quiet, stride, stats_at = self.stats.cycle_plan(record)
        return min(self.order.quiet_steps(record), quiet), stride, stats_at

    def sample_in_cycle(self, record: OptimizerRecord, opt: Any, step: int) -> None:
        """A steady cycle's sampled step (see `GradStats.sample_at`)."""
        self.stats.sample_at(record, opt, step)

    def stats_in_cycle(self, record: OptimizerRecord, losses: list[Any], step: int) -> tuple[bool, int, int, int]:
        """A steady cycle's step that stacks losses and decides a stride (see
        `GradStats.stats_in_cycle`): whether the cycle goes on, its samples' stride, its next
        such step (0: none) and the last step it may take."""
        return self.stats.stats_in_cycle(record, losses, step)

    def eval_in_cycle(self, record: OptimizerRecord, opt: Any, step: int, backwards: int) -> bool:
        """A steady cycle's step checked for modules in eval mode and a zero learning rate, the
        ``backwards`` calls it took counted (see `StepOrder.eval_in_cycle`): whether it goes on."""
        return self.order.eval_in_cycle(record, opt, step, self.n_backward + backwards)

    def probe_in_cycle(self, record: OptimizerRecord, opt: Any, last: tuple | None, first: bool) -> tuple | None:
        """A steady cycle's step that probes: the probe, which the cycle keeps (see
        `StepOrder.probe_in_cycle`)."""
        return self.order.probe_in_cycle(record, opt, last, first)

    def after_quiet(self, record: OptimizerRecord, cycle: SteadyCycle) -> None:
        """The state the hooks would have left after the calls the steady cycle took."""
        self.n_backward += cycle.backwards
        at_step, at_zero_grad = cycle.step_counts()
        self.order.after_quiet(record, at_step, at_zero_grad, cycle.backwards_since_probe,
                               cycle.probed >= 0, cycle.probe)
        self.stats.after_quiet(record, cycle.losses, cycle.steps - cycle.handed)

    def _remember_local_names(self) -> None:
        """A loop inside a function: its locals are gone at the end of the cell, keep names."""
        frame = self.user_frame(sys._getframe(1))
        # read once per frame and iteration (1,000 optimizers' first steps in one loop); the
        # frame is known by its id and its code (no reference kept: an id alone may be a new
        # frame of another helper, made where the last one was freed)
        if frame is None or (id(frame), id(frame.f_code), self.n_backward) == self._locals_read:
            return
        self._locals_read = (id(frame), id(frame.f_code), self.n_backward)
        if frame.f_locals is not frame.f_globals:
            for obj_id, name in Namer(frame.f_locals)._names.items():
                self.local_names.setdefault(obj_id, name)

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.in_step = False
        if self.order.n_at_step != self.n_backward:
            self.closure_seen = True
        elif self.order._pending is None:
            return  # nothing to confirm, no backward inside the step
        record = self.session.optimizers.record(optimizer)
        if record is not None:
            self.order.after_step(optimizer, record)

    def on_zero_grad(self, optimizer: Any, record: OptimizerRecord, caller: Any = None) -> None:
        """(``caller``: the frame that called zero_grad(), where a walk to the user's frame
        may start, or None)"""
        outer, self._frame_memo = self._frame_memo, (_START, caller)
        try:
            if self.ops.queue:  # (a gradient an op read, before it is zeroed)
                self.ops.flush()
            if self.stats.deferred:  # gradient norms of the last steps, before they are cleared
                self.stats.settle()
            self.order.on_zero_grad(optimizer, record)
        finally:
            self._frame_memo = outer  # (no frame kept past the call)

    def _observe(self, op, args, kwargs, out, position_fn) -> None:
        if self.in_scaler:
            return
        if self.in_step and (self.step_call is None or position_fn() == self.step_call):
            return  # the optimizer's own ops are no forward ops
        self.ops.observe(op, args, kwargs, out, position_fn)

    def finish(self, events: Any) -> None:
        namer = _Names(self.session.namer(), self.local_names)
        for part in (self.order, self.stats, self.ops):
            try:
                with self.own_ops():
                    events.measurements += part.finish(namer)
            except Exception as exc:  # one part's fault must not hide the others' measurements
                self.session.internal_error(exc)

    def close(self) -> None:
        if self._post is not None:
            self._post.remove()
            self._post = None
        try:
            self.session.provenance.observers.remove(self._observe)
        except ValueError:
            pass
        self.scaled = None
        for part in (self.order, self.stats, self.ops):
            part.close()
        for record in self.session.optimizers.records():
            record.order = record.series = None


class _Names:
    """The session's namer (notebook namespace), then names seen in the loop's function."""

    def __init__(self, namer: Any, local: dict[int, str]) -> None:
        self.namer, self.local = namer, local

    def name(self, obj: Any) -> str | None:
        return self.namer.name(obj) or self.local.get(id(obj))

    def optimizer_name(self, opt: Any) -> str | None:
        return self.namer.optimizer_name(opt) or self.local.get(id(opt))
