"""The order of ``backward()``, ``step()`` and ``zero_grad()`` per optimizer, and modules left
in eval mode while they train: measured here, judged by GW101-GW104, GW114 and GW115.

All of it is host-side bookkeeping on Python ints, plus one "probe" per optimizer: after each
``step()`` it remembers one parameter's gradient tensor and its version counter. If the next
``backward()`` finds that very tensor with that very version, nobody cleared it (``zero_grad``
sets it to None or bumps the version with ``zero_()``), and if the backward then bumps the
version, it accumulated into the gradient that the previous ``step()`` already used. This sees
``optimizer.zero_grad()``, ``model.zero_grad()``, ``p.grad = None`` and ``p.grad.zero_()``
alike, and leaves deliberate accumulation (several backwards, then one step) alone.

Code positions are taken (a frame walk) only for the first few calls and where something is
measured, never on every step. The probe is set on each optimizer's first steps and then on a
sample of them (the session's `StepSchedule`): a loop that never clears its gradients is caught
at once, and a long loop pays for the probe on few steps. A ``backward()`` looks only at the
optimizers that have something pending (a probe, or gradients a ``zero_grad()`` threw away), so
its cost does not grow with the optimizers that have nothing to check.
"""

from __future__ import annotations

import sys
import weakref
from typing import TYPE_CHECKING, Any

import torch

from ..locate.naming import submodules
from ..measurements import (AccumulatedIntoUsedGradient, ClearedUnusedGradients, EvalModeAtStep,
                            LearningRateZero, Measurement, NeverStepped, OptimizerRef, StepWithoutBackward)

if TYPE_CHECKING:
    from ..install.optimizer_table import OptimizerRecord
    from .training import TrainingMonitor

_EVAL_KINDS = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm)


class _Opt:
    __slots__ = ("record", "order", "lr_zero", "zero_grad_position", "uncleared", "step_position", "probe",
                 "probe_checked", "accumulated_at", "ids", "scaler", "times_cleared")

    def __init__(self, record: OptimizerRecord, order: int) -> None:
        self.record = record  # its counters (steps, backward calls at its last step and zero_grad)
        self.order = order  # first seen as the order-th optimizer: pending ones are visited in this order
        self.lr_zero = False  # lr 0 at the last check: checked every step until it rises
        self.zero_grad_position: tuple | None = None  # position of a zero_grad() call
        # a zero_grad() that cleared gradients no step used: (backward calls cleared, its position)
        self.uncleared: tuple | None = None
        self.step_position: tuple | None = None
        self.probe: tuple | None = None  # (param ref, grad ref, grad version)
        self.probe_checked = False
        self.accumulated_at: tuple | None = None  # a backward() that added to the gradient the last step used
        self.ids: set[int] | None = None
        self.scaler = False
        self.times_cleared = 0  # zero_grad() calls that threw away unused gradients


def _probe_of(opt: Any, last: tuple | None) -> tuple | None:
    """A probe: one gradient of ``opt``'s and its version as a step sees them (step() itself does
    not write to .grad), of the parameter of the ``last`` probe while it has a gradient; None if
    no parameter has one."""
    p = last[0]() if last is not None else None
    g = p.grad if p is not None else None
    if g is None:
        for group in opt.param_groups:
            for q in group["params"]:
                if q.grad is not None:
                    p, g = q, q.grad
                    break
            if g is not None:
                break
    if g is None:
        return None
    return (last[0] if last is not None and last[0]() is p else weakref.ref(p), weakref.ref(g), g._version)


class StepOrder:
    def __init__(self, monitor: TrainingMonitor) -> None:
        self.monitor = monitor
        self.schedule = monitor.session.schedule
        self.opts: dict[int, _Opt] = {}
        # the optimizers a backward() must look at: a probe is set or gradients were cleared unused
        self.pending: dict[int, _Opt] = {}
        self.used = 0  # backward calls whose gradients some step() has seen
        self.n_at_step = 0  # backward calls at the last step() (of any optimizer)
        self.backward_positions: list = []  # positions of the first backward calls
        # what was measured, one per (kind, optimizer); kinds: accumulated, cleared_then_backward,
        # cleared_then_step, no_backward, lr_zero, eval_mode
        self.seen: dict[tuple[str, int], dict[str, Any]] = {}
        self._pending: tuple | None = None  # a cleared/no-backward step, confirmed after step()
        self._train_depth = 0
        self.eval_called = False  # a model.eval() since the last eval-mode check
        self.checking = False  # some probe waits for after_backward()
        self.checked: list[_Opt] = []  # ... these ones
        self.watching = True  # on_backward() has work (positions to keep, probes, discards)
        self.eval_positions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.train_called = False  # some `module.train()` ran in the cell
        # modules in reach with dropout/batch norm in eval mode, and when they were found
        # (backward calls, train()/eval() calls, the user's code object): see `_modules_in_eval`
        self._in_eval: list[tuple[str, Any, list[tuple[str, Any]]]] = []
        self._in_eval_when: tuple | None = None
        self._mode_changes = 0
        self.eval_walks = 0  # times the modules in reach were walked (counted by tests)

    def _state(self, record: OptimizerRecord) -> _Opt:
        st = record.order
        if st is None:
            st = record.order = self.opts[record.key] = _Opt(record, len(self.opts))
        return st

    def _update_pending(self, key: int, st: _Opt) -> None:
        if st.probe is not None or st.uncleared is not None:
            self.pending[key] = st
        else:
            self.pending.pop(key, None)

    def _pending_in_order(self) -> list[tuple[int, _Opt]]:
        items = list(self.pending.items())
        if len(items) > 1:
            items.sort(key=lambda item: item[1].order)
        return items

    def _saw(self, kind: str, key: int, **data: Any) -> None:
        self.seen.setdefault((kind, key), data)

    def _rewatch(self) -> None:
        self.watching = bool(self.pending) or self.schedule.keeps_position(len(self.backward_positions))

    # --- hooks ----------------------------------------------------------------------------------
    def on_backward(self) -> None:
        monitor = self.monitor
        if self.schedule.keeps_position(len(self.backward_positions)):
            self.backward_positions.append(monitor.position())
        checked = []
        for key, st in self._pending_in_order():
            if st.uncleared is not None:
                # zero_grad() threw away gradients no step() used, and now a new backward starts
                n, zero_grad = st.uncleared
                st.uncleared = None
                st.times_cleared += 1
                self._saw("cleared_then_backward", key, backward=monitor.position(), zero_grad=zero_grad, n=n)
            probe = st.probe
            if probe is not None:
                p, g = probe[0](), probe[1]()
                if p is None or g is None or p.grad is not g or g._version != probe[2]:
                    st.probe = None  # cleared since the step (set to None, new tensor, zero_())
                else:
                    st.probe_checked = self.checking = True  # untouched: see what this backward does
                    checked.append(st)
            self._update_pending(key, st)
        self.checked = checked
        self._rewatch()

    def after_backward(self) -> None:
        self.checking = False
        checked, self.checked = self.checked, []
        for st in checked:
            if st.probe is None or not st.probe_checked:
                continue
            st.probe_checked = False
            p, g = st.probe[0](), st.probe[1]()
            if p is not None and g is not None and p.grad is g and g._version != st.probe[2]:
                # added to the gradient the last step() used; a bug if the next step sees it
                st.probe = (st.probe[0], st.probe[1], g._version)
                # the latest such backward(): the one that feeds this optimizer's step (a GAN's
                # G loss may add to D's gradients first; D's own backward is where zero_grad goes)
                st.accumulated_at = self.monitor.position()

    def on_step(self, opt: Any, record: OptimizerRecord) -> None:
        """(``record.steps`` counts this step already)"""
        st = record.order
        if st is None:
            st = self._state(record)
        key, steps = record.key, record.steps
        n = self.monitor.n_backward
        schedule = self.schedule
        if (steps > schedule.quiet_after and steps % schedule.busy_every
                or record.thinned and steps % schedule.eval_check_every) and n != record.backwards_at_step \
                and st.probe is None and st.uncleared is None and st.accumulated_at is None \
                and st.step_position is not None and not st.lr_zero and not self.eval_called:
            # most steps of a long loop: nothing sampled, nothing pending, a backward() since the
            # last step. What the full path below does then, without its calls:
            self._pending = None
            st.probe_checked = False
            record.backwards_at_step = self.used = self.n_at_step = n
            if self.pending:
                self.pending.pop(key, None)
                self._rewatch()
            return
        thinned = record.thinned  # (another optimizer's turn for the sampled checks)
        if not thinned and self.schedule.keeps_position(steps - 1) or st.step_position is None:
            st.step_position = self.monitor.position()
        if st.accumulated_at is not None and st.probe is not None:
            p, g = st.probe[0](), st.probe[1]()
            if p is not None and p.grad is g and g is not None and g._version == st.probe[2]:
                self._saw("accumulated", key, backward=st.accumulated_at, step=st.step_position,
                          zero_grad=st.zero_grad_position, step_index=steps)
        st.accumulated_at = None
        self._pending = None
        if st.uncleared is not None and record.backwards_at_zero_grad == n:
            self._pending = ("cleared_then_step", key, st.uncleared[1], n)  # zero_grad position
        elif n == record.backwards_at_step and (steps > 1 or not self._any_grad(opt)):
            # no backward() since this optimizer's last step (or none at all and no gradient)
            self._pending = ("no_backward", key, None, n)
        st.uncleared = None
        record.backwards_at_step = n
        self.used = self.n_at_step = n
        # the probe: one gradient and its version, as this step sees them (step() itself does
        # not write to .grad)
        probe, st.probe, st.probe_checked = st.probe, None, False
        if not thinned and self.schedule.probes(steps):
            self._set_probe(opt, st, probe)
        self._update_pending(key, st)
        self._rewatch()
        if self.schedule.checks_eval(steps) or self.eval_called:
            self.eval_called = False
            self._check_eval(opt, key, st)
            self._check_lr(key, opt, st)
        elif st.lr_zero:
            self._check_lr(key, opt, st)

    @staticmethod
    def _set_probe(opt: Any, st: _Opt, last: tuple | None) -> None:
        """The probe: one gradient and its version as this step sees them (step() itself does
        not write to .grad); the parameter of the ``last`` one while it has a gradient."""
        probe = _probe_of(opt, last)
        if probe is not None:
            st.probe = probe

    def probe_in_cycle(self, record: OptimizerRecord, opt: Any, last: tuple | None, first: bool) -> tuple | None:
        """A steady cycle's step that probes: the probe `on_step` would leave (nothing else of it
        is due at such a step, see `quiet_steps`), after ``last``, the cycle's previous one (the
        ``first`` of the cycle: after this optimizer's own). The cycle keeps it: only its last
        one, and only if no zero_grad() and backward() followed, can find anything, so it
        becomes this optimizer's probe when the cycle settles (`after_quiet`), not at each step."""
        st = record.order
        if st is None:
            return None
        return _probe_of(opt, st.probe if first else last)

    def eval_in_cycle(self, record: OptimizerRecord, opt: Any, step: int, n_backward: int) -> bool:
        """A steady cycle's ``step`` (after ``n_backward`` backward calls in all) checked as
        `on_step` checks it for modules in eval mode and a zero learning rate; whether the cycle
        goes on (not with a zero learning rate: see `quiet_steps`)."""
        st = record.order
        if st is None:
            return False
        self._check_eval(opt, record.key, st, step, n_backward)
        self._check_lr(record.key, opt, st)
        return not st.lr_zero

    def quiet_steps(self, record: OptimizerRecord) -> int:
        """How many next steps of this optimizer leave the hooks nothing to do, in a steady
        cycle: none while anything but this optimizer's probe is pending or watched; otherwise
        the session's bound (the next step `on_step` checks anything at but the probe, which
        the cycle leaves itself: `probe_in_cycle`) is the only one. A probe left by this step
        has nothing to find in the cycle: its zero_grad() clears the gradient the probe follows
        before the backward() that would look (see `after_quiet`)."""
        st = record.order
        if st is None or self._pending is not None or self.checking or st.uncleared is not None \
                or st.accumulated_at is not None or st.step_position is None or st.zero_grad_position is None \
                or st.lr_zero or self.eval_called or record.thinned \
                or (self.pending and (len(self.pending) > 1 or record.key not in self.pending)) \
                or self.schedule.keeps_position(len(self.backward_positions)):
            return 0
        return self.schedule.cycle_every

    def after_quiet(self, record: OptimizerRecord, at_step: int | None, at_zero_grad: int | None,
                    backwards: int, probed: bool = False, probe: tuple | None = None) -> None:
        """What `on_step`'s quiet branch and probes, `on_zero_grad` and `on_backward` leave after
        a steady cycle's calls (backward calls at the last step and the last zero_grad it took,
        None: none; the backward calls it took after its last probe, or after this optimizer's
        own if it set none; whether it ``probed``, and its last ``probe``)."""
        st = record.order
        if probed:  # (as `probe_in_cycle` would have left it, step by step)
            st.probe, st.probe_checked = probe, False
            self._update_pending(record.key, st)
            self._rewatch()
        if backwards and st.probe is not None:
            # (its first backward() came after its zero_grad(): `on_backward` finds the
            # gradient the probe follows cleared, and drops it)
            st.probe = None
            self._update_pending(record.key, st)
            self.checked = []
            self._rewatch()
        if at_step is not None:
            self._pending = None
            st.probe_checked = False
            record.backwards_at_step = self.used = self.n_at_step = at_step
        if at_zero_grad is not None:
            record.backwards_at_zero_grad = at_zero_grad

    def after_step(self, opt: Any, record: OptimizerRecord) -> None:
        st = record.order
        if st is None:
            return
        key = record.key
        pending, self._pending = self._pending, None
        last_backward = self.backward_positions[-1] if self.backward_positions else None
        if pending is not None and pending[1] == key and pending[3] == self.monitor.n_backward:
            # no backward inside step() either (an LBFGS closure would have called one)
            kind, _, zero_grad, _ = pending
            if kind == "cleared_then_step":
                if (kind, key) not in self.seen:  # GW102's news while the cell runs (see `news`)
                    self._tell("GW102", "`zero_grad()` ran between `backward()` and `step()`, so the step "
                               "found no gradient", zero_grad or st.step_position)
                self._saw(kind, key, zero_grad=zero_grad, step=st.step_position, backward=last_backward)
            else:
                if (kind, key) not in self.seen:  # GW103's news while the cell runs (see `news`)
                    self._tell("GW103", "`step()` ran without a `backward()` since the previous step",
                               st.step_position)
                self._saw(kind, key, step=st.step_position, no_gradient=not self._any_grad(opt),
                          backward=last_backward)
        if record.backwards_at_step != self.monitor.n_backward:  # backward() inside step(): a closure
            record.backwards_at_step = self.used = self.n_at_step = self.monitor.n_backward
            st.probe = None
            self._update_pending(key, st)
            self._rewatch()

    def _tell(self, code: str, what: str, position: Any) -> None:
        where = self.monitor.location(position)
        self.monitor.session.tell(code, what + (f" ({where.describe()})" if where is not None else ""))

    def on_scaler_step(self, opt: Any) -> None:
        # GradScaler may skip optimizer.step() (inf gradients, by design): the backward still
        # counts as used, and the step as taken
        self.used = self.monitor.n_backward
        record = self.monitor.record(opt)
        st = self._state(record)
        st.scaler = True
        st.uncleared = None
        self._update_pending(record.key, st)

    def on_zero_grad(self, opt: Any, record: OptimizerRecord) -> None:
        st = record.order
        if st is None:
            st = self._state(record)
        n = self.monitor.n_backward
        at_step = record.backwards_at_step
        if n > self.used and n > at_step and not self.monitor.in_step:  # (not an LBFGS closure)
            # gradients of backward calls that no step() used are about to be cleared
            st.uncleared = (n - max(self.used, at_step), self.monitor.position())
            self.pending[record.key] = st
            self.watching = True
        if st.zero_grad_position is None:
            st.zero_grad_position = self.monitor.position()
        record.backwards_at_zero_grad = n

    def on_train(self, module: Any, mode: bool) -> None:
        # called for the outermost (the user's) call only: Module.train recurses into children
        self._mode_changes += 1
        if mode:
            self.eval_positions.pop(module, None)
            self.train_called = True
        else:
            self.eval_positions[module] = self.monitor.position()
            self.eval_called = True

    # --- measurements ----------------------------------------------------------------------------
    @staticmethod
    def _any_grad(opt: Any) -> bool:
        return any(p.grad is not None for g in opt.param_groups for p in g["params"])

    def _check_lr(self, key: int, opt: Any, st: _Opt) -> None:
        groups = opt.param_groups
        if len(groups) == 1:  # (inline: the first steps of 1,000 one-group optimizers)
            lr = groups[0].get("lr")
            st.lr_zero = isinstance(lr, (int, float)) and lr == 0
        else:
            lrs = [g.get("lr") for g in groups]
            st.lr_zero = bool(lrs) and all(isinstance(lr, (int, float)) and lr == 0 for lr in lrs)
        if st.lr_zero:
            self._saw("lr_zero", key, step=st.step_position)

    def _modules_in_reach(self) -> list[tuple[str, Any]]:
        """(name, module) in the user's frame, then its globals, then the notebook: the
        notebook's from its `NamespaceIndex` (a namespace of 100,000 names is not walked)."""
        session = self.monitor.session
        frame = self.monitor.user_frame(sys._getframe(2))
        notebook = session.namespace()
        spaces = [frame.f_locals, frame.f_globals, notebook] if frame is not None else [notebook]
        found: list[tuple[str, Any]] = []
        walked: set[int] = set()
        for ns in spaces:
            if id(ns) in walked:
                continue
            walked.add(id(ns))
            if ns is notebook:
                session.namespace_index.refresh(contents=False)
                found += session.namespace_index.modules()
            else:
                found += [(var, value) for var, value in list(ns.items())
                          if isinstance(value, torch.nn.Module) and not var.startswith("_")]
        return found

    def _modules_in_eval(self, n_backward: int | None = None) -> list[tuple[str, Any, list[tuple[str, Any]]]]:
        """The modules in reach that hold a dropout or batch norm in eval mode, with those
        submodules: found once per backward() call (and again after a `train()`/`eval()`), so
        that 1,000 optimizers stepping in one iteration walk the namespace and modules once
        (``n_backward``: the calls so far, where the monitor has not counted them yet)."""
        frame = self.monitor.user_frame(sys._getframe(2))
        when = (self.monitor.n_backward if n_backward is None else n_backward, self._mode_changes,
                frame.f_code if frame is not None else None)
        if self._in_eval_when == when:
            return self._in_eval
        self.eval_walks += 1
        found: list[tuple[str, Any, list[tuple[str, Any]]]] = []
        seen: set[int] = set()
        for var, value in self._modules_in_reach():
            if id(value) in seen:
                continue
            seen.add(id(value))
            # (named only when one is found: torch's generator names each of 5,000 layers)
            if not any(isinstance(sub, _EVAL_KINDS) and not sub.training for sub in submodules(value)):
                continue
            off = [(name, sub) for name, sub in value.named_modules()
                   if isinstance(sub, _EVAL_KINDS) and not sub.training]
            if off:
                found.append((var, value, off))
        self._in_eval, self._in_eval_when = found, when
        return found

    def _check_eval(self, opt: Any, key: int, st: _Opt, step: int | None = None, n_backward: int | None = None) -> None:
        """(``step``, ``n_backward``: a steady cycle's, which the counts do not hold yet)"""
        in_eval = self._modules_in_eval(n_backward)
        if not in_eval:
            return
        if st.ids is None:
            st.ids = {id(p) for g in opt.param_groups for p in g["params"]}
        for var, value, off_kinds in in_eval:
            if not any(id(p) in st.ids for p in value.parameters()):
                continue
            # dropout in eval is off while training; batch norm in eval matters only when
            # its own affine parameters train (frozen BN statistics are a fine-tuning idiom)
            off = [name for name, sub in off_kinds
                   if not isinstance(sub, torch.nn.modules.batchnorm._BatchNorm)
                   or any(id(p) in st.ids for p in sub.parameters(recurse=False))]
            if not off:
                continue
            where = self.eval_positions.get(value)
            if where is None:
                for sub in value.modules():
                    where = self.eval_positions.get(sub)
                    if where is not None:
                        break
            self._saw("eval_mode", key, module=var, submodules=[f"{var}.{n}" if n else var for n in off],
                      eval_call=where, step=st.step_position, step_index=st.record.steps if step is None else step,
                      train_called=self.train_called)
            return

    # --- results -------------------------------------------------------------------------------
    def finish(self, namer: Any) -> list[Measurement]:
        monitor = self.monitor
        session = monitor.session
        n_backward = monitor.n_backward
        created = {ev.key for ev in session.events.optimizers if not ev.error}
        for key in created:
            st = self.opts.get(key)
            if (st is None or st.record.steps == 0) and n_backward > 0 and not (st and st.scaler):
                # an optimizer made in this cell, backward() called, but never a step()
                self._saw("never_stepped", key, backward=self.backward_positions[-1] if self.backward_positions
                          else None, zero_grad=st.zero_grad_position if st else None)
        loc = monitor.location
        out: list[Measurement] = []
        for (kind, key), data in self.seen.items():
            st = self.opts.get(key)
            opt = st.record.optimizer() if st is not None else None
            if opt is None:
                opt = session.optimizers.optimizer(key)
            optimizer = OptimizerRef(key=key, name=_opt_name(namer, opt, key),
                                     location=session.optimizers.locations.get(key), steps=st.record.steps if st else 0)
            at = {field: loc(data[field]) for field in ("backward", "step", "zero_grad", "eval_call")
                  if field in data}
            if kind == "accumulated":
                out.append(AccumulatedIntoUsedGradient(optimizer, at["backward"], at["step"], at["zero_grad"],
                                                       data["step_index"]))
            elif kind in ("cleared_then_backward", "cleared_then_step"):
                out.append(ClearedUnusedGradients(
                    optimizer, then=kind.rsplit("_", 1)[-1], zero_grad=at["zero_grad"], backward=at["backward"],
                    step=at.get("step") or (loc(st.step_position) if st else None),
                    backwards_cleared=data.get("n", 0), times=st.times_cleared if st else 0))
            elif kind == "no_backward":
                out.append(StepWithoutBackward(optimizer, at["step"], at["backward"], data["no_gradient"],
                                               _names(namer, opt)))
            elif kind == "never_stepped":
                out.append(NeverStepped(optimizer, at["backward"], at["zero_grad"], n_backward))
            elif kind == "lr_zero":
                out.append(LearningRateZero(optimizer, at["step"], at_last_check=bool(st and st.lr_zero),
                                            params=_names(namer, opt)))
            elif kind == "eval_mode":
                out.append(EvalModeAtStep(optimizer, data["module"], data["submodules"], at["eval_call"],
                                          at["step"], data["step_index"], data["train_called"]))
        return out

    def close(self) -> None:
        self.opts.clear()
        self.pending.clear()
        self.checked = []
        self.eval_positions = weakref.WeakKeyDictionary()
        self._pending = None
        self._in_eval, self._in_eval_when = [], None


def _opt_name(namer: Any, opt: Any, key: int) -> str:
    return (namer.optimizer_name(opt) if opt is not None else None) or f"optimizer#{key}"


def _names(namer: Any, opt: Any) -> list[str]:
    if opt is None:
        return []
    return [namer.name(p) or f"param {i}" for i, p in
            enumerate(p for g in opt.param_groups for p in g["params"])][:64]
