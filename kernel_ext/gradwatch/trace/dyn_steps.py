"""The order of ``backward()``, ``step()`` and ``zero_grad()`` per optimizer (GW101-GW104) and
modules left in eval mode while they train (GW115).

All of it is host-side bookkeeping on Python ints, plus one "probe" per optimizer: after each
``step()`` it remembers one parameter's gradient tensor and its version counter. If the next
``backward()`` finds that very tensor with that very version, nobody cleared it (``zero_grad``
sets it to None or bumps the version with ``zero_()``), and if the backward then bumps the
version, it accumulated into the gradient that the previous ``step()`` already used. This sees
``optimizer.zero_grad()``, ``model.zero_grad()``, ``p.grad = None`` and ``p.grad.zero_()``
alike, and leaves deliberate accumulation (several backwards, then one step) alone.

Code positions are taken (a frame walk) only for the first few calls and where a finding is
made, never on every step. The probe is set on each optimizer's first `_PROBE_ALL` steps and
then on every `_PROBE_EVERY`-th: a loop that never clears its gradients is caught at once, and
a long loop pays for the probe on few steps.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any

import torch

_KEEP_POSITIONS = 3  # first calls whose positions are kept, for related locations
_EVAL_CHECK_EVERY = 64  # steps between eval-mode checks (and the first step)
_PROBE_ALL = 16
_PROBE_EVERY = 8
_EVAL_KINDS = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm)


class _Opt:
    __slots__ = ("ref", "lr_zero", "steps", "bwd_at_step", "zg_at", "zg_pos", "zg_discard", "step_pos",
                 "probe", "probe_checked", "acc_pos", "ids", "scaler", "discards")

    def __init__(self, opt: Any) -> None:
        self.ref = weakref.ref(opt)
        self.lr_zero = False  # lr 0 at the last check: checked every step until it rises
        self.steps = 0
        self.bwd_at_step = 0  # backward calls seen at this optimizer's last step
        self.zg_at = -1  # backward calls seen at its last zero_grad()
        self.zg_pos = None  # position of a zero_grad() call
        self.zg_discard: tuple | None = None  # (backwards discarded, zero_grad position)
        self.step_pos = None
        self.probe: tuple | None = None  # (param ref, grad ref, grad version)
        self.probe_checked = False
        self.acc_pos = None  # a backward() that added to the gradient the last step used
        self.ids: set[int] | None = None
        self.scaler = False
        self.discards = 0  # zero_grad() calls that threw away unused gradients


class StepOrder:
    def __init__(self, monitor: Any) -> None:
        self.m = monitor
        self.opts: dict[int, _Opt] = {}
        self.used = 0  # backward calls whose gradients some step() has seen
        self.n_at_step = 0  # backward calls at the last step() (of any optimizer)
        self.bwd_pos: list = []  # positions of the first backward calls
        self.findings: dict[tuple, dict] = {}
        self._pending: tuple | None = None  # a GW102/GW103 suspicion, confirmed after step()
        self._train_depth = 0
        self.eval_called = False  # a model.eval() since the last eval-mode check
        self.checking = False  # some probe waits for after_backward()
        self.watching = True  # on_backward() has work (positions to keep, probes, discards)
        self.eval_pos: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.train_called = False  # some `module.train()` ran in the cell

    def _state(self, opt: Any, key: int) -> _Opt:
        st = self.opts.get(key)
        if st is None:
            st = self.opts[key] = _Opt(opt)
        return st

    def _find(self, code: str, key: int, **data: Any) -> None:
        self.findings.setdefault((code, key), dict(code=code, optimizer_key=key, **data))

    def _rewatch(self) -> None:
        watching = len(self.bwd_pos) < _KEEP_POSITIONS
        if not watching:
            for st in self.opts.values():
                if st.probe is not None or st.zg_discard is not None:
                    watching = True
                    break
        self.watching = watching

    # --- hooks ----------------------------------------------------------------------------------
    def on_backward(self) -> None:
        m = self.m
        if len(self.bwd_pos) < _KEEP_POSITIONS:
            self.bwd_pos.append(m.position())
        for key, st in self.opts.items():
            if st.zg_discard is not None:
                # zero_grad() threw away gradients no step() used, and now a new backward starts
                n, zg_pos = st.zg_discard
                st.zg_discard = None
                st.discards += 1
                if ("GW104", key) not in self.findings:
                    self._find("GW104", key, kind="discarded", backward=m.position(),
                               zero_grad=zg_pos, n=n)
            probe = st.probe
            if probe is not None:
                p, g = probe[0](), probe[1]()
                if p is None or g is None or p.grad is not g or g._version != probe[2]:
                    st.probe = None  # cleared since the step (set to None, new tensor, zero_())
                else:
                    st.probe_checked = self.checking = True  # untouched: see what this backward does
        self._rewatch()

    def after_backward(self) -> None:
        self.checking = False
        for st in self.opts.values():
            if st.probe is None or not st.probe_checked:
                continue
            st.probe_checked = False
            p, g = st.probe[0](), st.probe[1]()
            if p is not None and g is not None and p.grad is g and g._version != st.probe[2]:
                # added to the gradient the last step() used; a bug if the next step sees it
                st.probe = (st.probe[0], st.probe[1], g._version)
                # the latest such backward(): the one that feeds this optimizer's step (a GAN's
                # G loss may add to D's gradients first; D's own backward is where zero_grad goes)
                st.acc_pos = self.m.position()

    def on_step(self, opt: Any, key: int) -> None:
        st = self._state(opt, key)
        st.steps += 1
        n = self.m.n_backward
        if st.steps <= _KEEP_POSITIONS or st.step_pos is None:
            st.step_pos = self.m.position()
        if st.acc_pos is not None and st.probe is not None:
            p, g = st.probe[0](), st.probe[1]()
            if p is not None and p.grad is g and g is not None and g._version == st.probe[2]:
                self._find("GW101", key, backward=st.acc_pos, step=st.step_pos,
                           zero_grad=st.zg_pos, step_index=st.steps)
        st.acc_pos = None
        self._pending = None
        if st.zg_discard is not None and st.zg_at == n:
            self._pending = ("GW102", key, st.zg_discard[1], n)  # backward, zero_grad, step
        elif n == st.bwd_at_step and (st.steps > 1 or not self._any_grad(opt)):
            # no backward() since this optimizer's last step (or none at all and no gradient)
            self._pending = ("GW103", key, None, n)
        st.zg_discard = None
        st.bwd_at_step = n
        self.used = self.n_at_step = n
        # the probe: one gradient and its version, as this step sees them (step() itself does
        # not write to .grad)
        probe, st.probe, st.probe_checked = st.probe, None, False
        if st.steps <= _PROBE_ALL or st.steps % _PROBE_EVERY == 0:
            p = probe[0]() if probe is not None else None
            g = p.grad if p is not None else None
            if g is None:
                for group in opt.param_groups:
                    for q in group["params"]:
                        if q.grad is not None:
                            p, g = q, q.grad
                            break
                    if g is not None:
                        break
            if g is not None:
                st.probe = (probe[0] if probe is not None and probe[0]() is p else weakref.ref(p),
                            weakref.ref(g), g._version)
        self._rewatch()
        if st.steps == 1 or st.steps % _EVAL_CHECK_EVERY == 0 or self.eval_called:
            self.eval_called = False
            self._check_eval(opt, key, st)
            self._check_lr(opt, key, st)
        elif st.lr_zero:
            self._check_lr(opt, key, st)

    def after_step(self, opt: Any, key: int) -> None:
        st = self.opts.get(key)
        if st is None:
            return
        pending, self._pending = self._pending, None
        if pending is not None and pending[1] == key and pending[3] == self.m.n_backward:
            # no backward inside step() either (an LBFGS closure would have called one)
            code, _, zg_pos, _ = pending
            if code == "GW102":
                self._find("GW102", key, zero_grad=zg_pos, step=st.step_pos,
                           backward=self.bwd_pos[-1] if self.bwd_pos else None)
            else:
                if ("GW103", key) not in self.findings:  # its news while the cell runs (see `news`)
                    where = self.m.location(st.step_pos)
                    self.m.session.tell("GW103", "`step()` ran without a `backward()` since the previous step"
                                        + (f" ({where.describe()})" if where is not None else ""))
                self._find("GW103", key, step=st.step_pos, no_grad=not self._any_grad(opt),
                           backward=self.bwd_pos[-1] if self.bwd_pos else None)
        if st.bwd_at_step != self.m.n_backward:  # backward() inside step(): a closure
            st.bwd_at_step = self.used = self.n_at_step = self.m.n_backward
            st.probe = None

    def on_scaler_step(self, opt: Any) -> None:
        # GradScaler may skip optimizer.step() (inf gradients, by design): the backward still
        # counts as used, and the step as taken
        self.used = self.m.n_backward
        key = self.m.session._key(opt)
        st = self._state(opt, key)
        st.scaler = True
        st.zg_discard = None

    def on_zero_grad(self, opt: Any, key: int) -> None:
        st = self._state(opt, key)
        n = self.m.n_backward
        if n > self.used and n > st.bwd_at_step and not self.m.in_step:  # (not an LBFGS closure)
            # gradients of backward calls that no step() used are about to be cleared
            st.zg_discard = (n - max(self.used, st.bwd_at_step), self.m.position())
            self.watching = True
        if st.zg_pos is None:
            st.zg_pos = self.m.position()
        st.zg_at = n

    def on_train(self, module: Any, mode: bool) -> None:
        # called for the outermost (the user's) call only: Module.train recurses into children
        if mode:
            self.eval_pos.pop(module, None)
            self.train_called = True
        else:
            self.eval_pos[module] = self.m.position()
            self.eval_called = True

    # --- checks --------------------------------------------------------------------------------
    @staticmethod
    def _any_grad(opt: Any) -> bool:
        return any(p.grad is not None for g in opt.param_groups for p in g["params"])

    def _check_lr(self, opt: Any, key: int, st: _Opt) -> None:
        lrs = [g.get("lr") for g in opt.param_groups]
        st.lr_zero = bool(lrs) and all(isinstance(lr, (int, float)) and lr == 0 for lr in lrs)
        if st.lr_zero:
            self._find("GW114", key, kind="lr", step=st.step_pos)
        elif self.findings.get(("GW114", key), {}).get("kind") == "lr":
            # a warm-up schedule that starts at 0 and rises is not a bug
            del self.findings[("GW114", key)]

    def _check_eval(self, opt: Any, key: int, st: _Opt) -> None:
        if st.ids is None:
            st.ids = {id(p) for g in opt.param_groups for p in g["params"]}
        frame = self.m.session.source_map.user_frame(sys._getframe(1))
        spaces = [self.m.session.namespace()]
        if frame is not None:
            spaces[:0] = [frame.f_locals, frame.f_globals]
        seen = set()
        for ns in spaces:
            for var, value in list(ns.items()):
                if not isinstance(value, torch.nn.Module) or id(value) in seen or var.startswith("_"):
                    continue
                seen.add(id(value))
                if not any(id(p) in st.ids for p in value.parameters()):
                    continue
                # dropout in eval while training is a bug; batch norm in eval is one only when
                # its own affine parameters train (frozen BN statistics are a fine-tuning idiom)
                off = [name for name, sub in value.named_modules()
                       if isinstance(sub, _EVAL_KINDS) and not sub.training
                       and (not isinstance(sub, torch.nn.modules.batchnorm._BatchNorm)
                            or any(id(p) in st.ids for p in sub.parameters(recurse=False)))]
                if not off:
                    continue
                where = self.eval_pos.get(value)
                if where is None:
                    for sub in value.modules():
                        where = self.eval_pos.get(sub)
                        if where is not None:
                            break
                self._find("GW115", key, module=var, submodules=[f"{var}.{n}" if n else var for n in off],
                           eval=where, step=st.step_pos, step_index=st.steps, train_called=self.train_called)
                return

    # --- results -------------------------------------------------------------------------------
    def finish(self, namer: Any) -> list[dict]:
        session = self.m.session
        created = {ev.key for ev in session.events.optimizers if not ev.error}
        for key in created:
            st = self.opts.get(key)
            if (st is None or st.steps == 0) and self.m.n_backward > 0 and not (st and st.scaler):
                # an optimizer made in this cell, backward() called, but never a step()
                self._find("GW104", key, kind="never_stepped", backward=self.bwd_pos[-1] if self.bwd_pos else None,
                           zero_grad=st.zg_pos if st else None, n=self.m.n_backward)
        out = []
        loc = self.m.location
        for (code, key), f in self.findings.items():
            st = self.opts.get(key)
            opt = st.ref() if st is not None else None
            if opt is None:
                opt = next((o for o, k in list(session.optimizers.items()) if k == key), None)
            f["optimizer"] = _opt_name(namer, opt, key)
            f["steps"], f["discards"] = (st.steps, st.discards) if st is not None else (0, 0)
            f["optimizer_location"] = session._opt_locations.get(key)
            f["params"] = _names(namer, opt) if code in ("GW103", "GW114") else []
            for field in ("backward", "step", "zero_grad", "eval"):
                if field in f:
                    f[field] = loc(f[field])
            out.append(f)
        return out

    def close(self) -> None:
        self.opts.clear()
        self.eval_pos = weakref.WeakKeyDictionary()
        self._pending = None


def _opt_name(namer: Any, opt: Any, key: int) -> str:
    return (namer.name(opt) if opt is not None else None) or f"optimizer#{key}"


def _names(namer: Any, opt: Any) -> list[str]:
    if opt is None:
        return []
    return [namer.name(p) or f"param {i}" for i, p in
            enumerate(p for g in opt.param_groups for p in g["params"])][:64]
