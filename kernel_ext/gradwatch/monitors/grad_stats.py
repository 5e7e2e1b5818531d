"""Gradient norms and losses over many steps, measured for GW105-GW108 and GW112-GW114.

Per sampled step the only work is ``torch._foreach_norm`` over the optimizer's gradients and a
``torch.stack`` (what ``clip_grad_norm_`` does); per loss a ``detach()``, stacked every 32. Rows are
kept on the device and reduced every `_BLOCK` rows into a fixed set of per-parameter device
tensors (first non-finite step, run of exact zeros, mean log-norm, the means of the first
`_FIRST_BLOCK` rows and of the last rows), so the state grows with the number of parameter
tensors, never with the number of steps.

Nothing here reads a device value on the host before the end of the cell, with one exception
that costs no sync: after each block (and after the first `_FIRST_BLOCK` rows, which are
reduced with the block they start) a "something was non-finite" flag is copied to pinned
host memory with ``non_blocking=True`` and an event (on the CPU it is read directly); once the
copy has landed it asks the session to trace the next iterations, so that `op_checks` can name
the first forward op that produced a non-finite value (what anomaly mode is for).

Sampling (the session's `StepSchedule`): every optimizer step is measured for the first steps;
after that the stride adapts so that the statistics cost a small, fixed share of the loop's time
(a long loop of tiny steps is checked every few steps, a GPU model every step). Each row
remembers its own step number, so a change of stride costs nothing (no early reduction), and the
stride is a power of two that goes down only by a factor of four (timing noise does not make it
flap).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import torch

from ..measurements import GradientStatistics, LazyNames, LossStatistics, Measurement, OptimizerRef
from .norms import ShapeGroups

if TYPE_CHECKING:
    from ..install.optimizer_table import OptimizerRecord
    from .training import TrainingMonitor

_BLOCK = 64  # rows per device reduction
_FIRST_BLOCK = 16  # the first rows are the baseline that later growth is measured against
_TAIL = 8  # ... and the last rows of each block are the latest state
_LOSS_BLOCK = 1024  # losses reduced together (a loop of a few hundred steps: once, at the end of the cell)
_CHUNK = 32
_NEVER = 1 << 62  # (a step no loop reaches)
_FIRST_LOSSES = 16
_BIG = float("inf")
_DEFERRED_WIDTH = 8  # optimizers of at most so many tensors have their samples reduced together


class _DeviceFlag:
    """A device value read on the host without a sync (pinned copy + event on CUDA): a bool, set
    when True, or a number (a largest magnitude), set when it is not finite."""

    def __init__(self) -> None:
        self._pending: list[tuple[Any, Any, str]] = []

    def post(self, flag: torch.Tensor, what: str) -> None:
        if flag.device.type == "cuda":
            host = torch.empty((), dtype=flag.dtype, pin_memory=True)
            host.copy_(flag, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._pending.append((host, event, what))
            del self._pending[:-4]
        else:
            self._pending.append((flag, None, what))

    def poll(self) -> str | None:
        """What the first posted flag that has landed and was set is about, if any."""
        hit = None
        while self._pending:
            host, event, what = self._pending[0]
            if event is not None and not event.query():
                break
            self._pending.pop(0)
            if hit is None:
                value = host.item()
                if value is True or (type(value) is float and not math.isfinite(value)):
                    hit = what
        return hit


class _Series:
    """Statistics of one optimizer's gradients and of the losses its steps follow."""

    def __init__(self, record: OptimizerRecord | None, key: int) -> None:
        self.record = record  # its optimizer and step count (None: losses of backward calls no step follows)
        self.key = key
        self.params: list[torch.Tensor] | None = None
        self.numels: list[int] = []
        self.ndims: list[int] = []
        self.stride = 1
        self.rows: list[torch.Tensor] = []  # per sampled step: the norms of its gradients
        self.row_steps: list[int] = []  # the step number of each row
        self.partial = False  # some parameter had no gradient at a sampled step
        self.last_row_step = 0
        self.n_rows = 0
        self.cost = 0.0  # own seconds and samples since the last stride decision
        self.samples = 0
        self.t_adapt = time.perf_counter()
        self.adapt_step = 0
        self.failed = False
        self.acc: dict[str, torch.Tensor] = {}
        self.read: dict[str, Any] | None = None  # acc as host values (`_flush_group`, at the end)
        self.eager = False  # sampled at once, never deferred (see `GradStats._defer`)
        self.shapes: ShapeGroups | None = None  # many small CPU tensors: normed by shape (see `norms`)
        self.losses: list[torch.Tensor] = []  # 0-d, fewer than _CHUNK
        self.chunks: list[torch.Tensor] = []  # stacked losses, fewer than _LOSS_BLOCK in all
        self.n_chunked = 0
        self.n_losses = 0
        self.lacc: dict[str, torch.Tensor] = {}
        self.minus_one: torch.Tensor | None = None

    @property
    def n_steps(self) -> int:
        return self.record.steps if self.record is not None else 0


class GradStats:
    def __init__(self, monitor: TrainingMonitor) -> None:
        self.monitor = monitor
        self.schedule = monitor.session.schedule
        self.series: dict[int, _Series] = {}
        self.pending: list[torch.Tensor] = []  # losses since the last step
        # the optimizer of the last step: its series (`last`) is made when something needs it
        self.last_record: OptimizerRecord | None = None
        self.flag = _DeviceFlag()
        self.traced_after_nonfinite = False
        self.loss_position = None
        # samples of small optimizers taken since the last backward()/zero_grad(), reduced
        # together in one `_foreach_norm` by `settle` (see `_defer`): their series,
        self.deferred: list[_Series] = []
        self.deferred_steps: list[int] = []  # ... the step of each,
        self.deferred_widths: list[int] = []  # ... its number of gradients,
        self.deferred_grads: list[torch.Tensor] = []  # ... all their gradients in a row
        self.deferred_versions: list[int] = []  # ... and those gradients' versions then
        self.deferred_series: set[int] = set()  # their series' keys
        self.norm_calls = 0  # `_foreach_norm` calls (counted by tests)
        self.sampling_step: int | None = None  # the step a steady cycle samples (`sample_at`)

    # --- hooks ----------------------------------------------------------------------------------
    def on_loss(self, root: torch.Tensor) -> None:
        if _is_loss(root):
            if self.loss_position is None:
                self.loss_position = self.monitor.position()
            self.pending.append(root.detach())
            if len(self.pending) >= _CHUNK:  # backward() without step(): the last series
                self._take_losses(self.last or self._no_step_series())

    def _take_losses(self, s: _Series) -> None:
        s.losses += self.pending
        self.pending.clear()
        if len(s.losses) >= _CHUNK:
            self._chunk_losses(s)

    def _chunk_losses(self, s: _Series) -> None:
        # Losses are stacked every _CHUNK into one tensor: few live Python objects (each one
        # makes the garbage collector run more often in the user's loop), and a cheap early
        # look at their finiteness so that a trace can follow soon after a NaN.
        chunk = torch.stack(s.losses)
        s.losses = []
        s.chunks.append(chunk)
        s.n_chunked += chunk.shape[0]
        if not self.traced_after_nonfinite:
            # (their largest magnitude: NaN or Inf exactly when a loss is, in one op)
            self._nonfinite(torch.linalg.vector_norm(chunk, _BIG), "the loss")
        if s.n_chunked >= _LOSS_BLOCK:
            self._flush_losses(s)

    def _no_step_series(self) -> _Series:
        s = self.series.get(0)
        if s is None:
            s = self.series[0] = _Series(None, 0)
        return s

    @property
    def last(self) -> _Series | None:
        """The series of the last step's optimizer."""
        return self._series_of(self.last_record) if self.last_record is not None else None

    def _series_of(self, record: OptimizerRecord) -> _Series:
        s = record.series
        if s is None:
            s = record.series = self.series[record.key] = _Series(record, record.key)
        return s

    def on_step(self, opt: Any, record: OptimizerRecord) -> None:
        """(``record.steps`` counts this step already)"""
        self.last_record = record
        s = record.series
        pending = self.pending
        if s is None:
            if record.thinned and not pending:
                return  # nothing to keep yet: its series is made at its turn (1,000 optimizers)
            s = self._series_of(record)
        if pending:  # (`_take_losses`, inline: every step)
            s.losses += pending
            pending.clear()
            if len(s.losses) >= _CHUNK:
                self._chunk_losses(s)
        n = record.steps
        if n % s.stride or record.thinned:
            return  # the common case once the loop is known: one modulo
        if self.schedule.adapts_stride(n):
            self._adapt(s)
        if not s.failed:
            self._sample(s, opt)

    def cycle_plan(self, record: OptimizerRecord) -> tuple[int, int, int]:
        """How many next steps of this optimizer a steady cycle (one loss per step) can take; the
        stride at which it samples (`sample_at`; 0: none); and the first step at which it does
        the statistics' work (`stats_in_cycle`; 0: none)."""
        s = record.series
        if s is None or self.pending or self.last_record is not record or self.loss_position is None \
                or record.thinned:
            return 0, 0, 0
        n = record.steps
        stats_at, last = self._next_in_cycle(s, n)
        return max(0, last - n), 0 if s.failed else s.stride, stats_at

    def _next_in_cycle(self, s: _Series, n: int) -> tuple[int, int]:
        """After step ``n``: the next step at which a steady cycle does the statistics' work (0:
        none), and the last step it may take. That work is a stride decision and a full chunk of
        losses: where the two fall on one step (in a loop of one loss per step, every 32nd), the
        cycle does both there and goes on (asking again then); otherwise it ends before the
        first of them, which the full path does."""
        decision = self.schedule.next_stride_decision(n)
        fill = n + _CHUNK - len(s.losses)  # the step whose loss fills a chunk
        if fill != decision or decision % s.stride:  # (`on_step` decides at a multiple of the stride only)
            return 0, min(decision, fill) - 1
        return decision, _NEVER

    def stats_in_cycle(self, record: OptimizerRecord, losses: list[torch.Tensor], step: int) \
            -> tuple[bool, int, int, int]:
        """A steady cycle's step at which `on_step` stacks the losses and decides the stride, done
        as `on_step` does it (its sample, at the stride before the decision, the cycle takes
        after this): ``losses``, those of the cycle's backward calls since its last such step,
        handed to the series. Whether the chunk filled (if a root that is no loss left it short,
        the full path stacks later, at a step the cycle does not know, and the cycle ends here),
        the stride of the cycle's next samples (0: none), the next step of this work in the cycle
        (0: none) and the last step it may take (`_next_in_cycle`)."""
        s = record.series
        self.sampling_step = step  # (news of a NaN found now names this step)
        try:
            s.losses += [t for t in losses if _is_loss(t)]
            full = len(s.losses) >= _CHUNK
            if full:
                self._chunk_losses(s)
            if not step % s.stride and self.schedule.adapts_stride(step):
                self._adapt(s, step)
        finally:
            self.sampling_step = None
        stats_at, last = self._next_in_cycle(s, step) if full else (0, step)
        return full, 0 if s.failed else s.stride, stats_at, last

    def sample_at(self, record: OptimizerRecord, opt: Any, step: int) -> None:
        """A steady cycle's sampled step, ``step`` of the optimizer's (its count moves on when
        the cycle settles): the sample `on_step` would take, at once (nothing settles deferred
        samples before the cycle's next zero_grad() clears the gradients)."""
        self.sampling_step = step  # (news of a NaN found now names this step)
        try:
            self._sample(record.series, opt, step, defer=False)
        finally:
            self.sampling_step = None

    def after_quiet(self, record: OptimizerRecord, losses: list[torch.Tensor], steps: int) -> None:
        """A steady cycle's losses (since its last `stats_in_cycle`) where `on_loss` and `on_step`
        put them: those of the backward calls its ``steps`` followed in the series, the rest
        pending."""
        # (the cycle keeps every root of a `loss.backward()`; `on_loss` keeps scalar losses
        # with values: a root that is none raised in backward(), which ended the cycle, unless
        # it had one element, as a loss of shape [1] does)
        with torch._C.DisableTorchFunction():  # (a user's mode entered since sees none of it)
            if steps:  # (fewer than _CHUNK: see `cycle_plan`)
                record.series.losses += [t for t in losses[:steps] if _is_loss(t)]
            self.pending += [t for t in losses[steps:] if _is_loss(t)]

    def _sample(self, s: _Series, opt: Any, step: int | None = None, defer: bool = True) -> None:
        t0 = time.perf_counter()
        if s.params is None:
            s.params = [p for g in opt.param_groups for p in g["params"] if p.requires_grad]
            s.numels = [p.numel() for p in s.params]
            s.ndims = [p.dim() for p in s.params]
            s.shapes = ShapeGroups.plan(s.params)
        if not s.params:
            return
        grads = [p.grad for p in s.params]
        if defer and self._defer(s, grads, t0):
            return
        try:
            self.norm_calls += 1
            if not s.partial:
                try:
                    # one stacked tensor per sample: few live Python objects between flushes
                    # (a None in grads raises the TypeError handled below)
                    row = s.shapes.norms(grads, 2, torch.float32) if s.shapes is not None else \
                        torch.stack(torch._foreach_norm(grads, 2, dtype=torch.float32))  # pyright: ignore[reportPrivateImportUsage, reportArgumentType]
                except TypeError:  # a missing gradient (None): the slower path from now on
                    if not any(g is None for g in grads):
                        raise
                    s.partial = True
            if s.partial:
                present = [g for g in grads if g is not None]
                if not present:
                    return
                norms = iter(torch._foreach_norm(present, 2, dtype=torch.float32))  # pyright: ignore[reportPrivateImportUsage]
                if s.minus_one is None:
                    s.minus_one = torch.full((), -1.0, device=present[0].device)
                row = torch.stack([next(norms) if g is not None else s.minus_one for g in grads])
        except (RuntimeError, TypeError, NotImplementedError):
            s.failed = True  # sparse gradients, several devices ...: no statistics, no error
            return
        self._add_row(s, row, s.n_steps if step is None else step, time.perf_counter() - t0)

    def _add_row(self, s: _Series, row: torch.Tensor, step: int, cost: float) -> None:
        s.rows.append(row)
        s.row_steps.append(step)
        s.samples += 1
        s.cost += cost
        n = len(s.rows)
        if n >= _BLOCK:
            self._flush(s)
        elif n == _FIRST_BLOCK and not s.n_rows:
            # the baseline rows are reduced with the rows after them (a short loop's figures in
            # one reduction, at the end of the cell), but whether they hold a NaN or Inf is
            # posted now, as a reduction of theirs would: the trace that names the op follows soon
            self._nonfinite(torch.isfinite(torch.stack(s.rows)).all().logical_not(), "a gradient")

    def _defer(self, s: _Series, grads: list, t0: float) -> bool:
        """Whether this sample waits for `settle`: many small optimizers stepping in one
        iteration (1,000 one-tensor ones) cost one `_foreach_norm` per iteration, not one each.
        Only where the figures cannot change: a built-in torch optimizer (its step() never
        writes to ``.grad``), a few dense gradients on one device, at least two optimizers
        (one optimizer samples at once, as before). Each gradient's version is kept: one that
        changes in place before `settle` (``p.grad.zero_()``) drops the sample, and the
        series samples at once from then on."""
        if s.partial or len(grads) > _DEFERRED_WIDTH or len(self.series) < 2 or s.eager:
            return False
        record = s.record
        opt = record.optimizer() if record is not None else None
        if opt is None or not type(opt).__module__.startswith("torch.optim") or opt.defaults.get("fused"):
            s.eager = True  # (a fused kernel may write .grad)
            return False
        device = grads[0].device if grads[0] is not None else None
        for g in grads:
            if g is None or g.device != device or g.layout != torch.strided:
                return False
        if s.key in self.deferred_series:
            self.settle()  # (two steps without a backward or zero_grad between them)
        # flat lists, no record per sample: 1,000 records an iteration would bring on a full
        # garbage collection (a tenth of a second with torch loaded)
        self.deferred.append(s)
        self.deferred_steps.append(s.n_steps)
        self.deferred_widths.append(len(grads))
        self.deferred_grads += grads
        self.deferred_versions += [g._version for g in grads]
        self.deferred_series.add(s.key)
        s.cost += time.perf_counter() - t0
        return True

    def settle(self) -> None:
        """The deferred samples reduced: one `_foreach_norm` per device (before a backward()
        or zero_grad() changes the gradients, and at the end of the cell)."""
        if not self.deferred:
            return
        series, steps, widths = self.deferred, self.deferred_steps, self.deferred_widths
        grads, versions = self.deferred_grads, self.deferred_versions
        self.deferred, self.deferred_steps, self.deferred_widths = [], [], []
        self.deferred_grads, self.deferred_versions = [], []
        self.deferred_series = set()
        cap = self.schedule.checked_per_backward
        if len(series) > cap:
            # more optimizers sampled than get the sampled checks per iteration: they stepped
            # before it was known how many would (after a backward() that was not traced: a traced
            # one tells, see `Watch._on_step`; their turns start with the next iteration). The
            # first ones keep their samples, as when taking turns
            series, steps, widths = series[:cap], steps[:cap], widths[:cap]
            kept = sum(widths)
            grads, versions = grads[:kept], versions[:kept]
        t0 = time.perf_counter()
        changed = [g._version for g in grads] != versions
        by_device: dict[Any, list[int]] = {}  # device -> the samples' positions
        start = 0
        starts = []
        for i, width in enumerate(widths):
            starts.append(start)
            if changed and any(grads[j]._version != versions[j] for j in range(start, start + width)):
                series[i].eager = True  # changed in place since the step: this sample is lost
            else:
                by_device.setdefault(grads[start].device, []).append(i)
            start += width
        n = sum(map(len, by_device.values()))
        for positions in by_device.values():
            try:
                self.norm_calls += 1
                flat = grads if len(positions) == len(widths) else \
                    [g for i in positions for g in grads[starts[i]:starts[i] + widths[i]]]
                norms = torch.stack(torch._foreach_norm(flat, 2, dtype=torch.float32))  # pyright: ignore[reportPrivateImportUsage, reportArgumentType]
            except (RuntimeError, TypeError, NotImplementedError):
                for i in positions:
                    series[i].failed = True  # as `_sample` does: no statistics, no error
                continue
            cost = (time.perf_counter() - t0) / max(n, 1)
            at = 0
            for i in positions:
                self._add_row(series[i], norms[at:at + widths[i]], steps[i], cost)
                at += widths[i]

    def _adapt(self, s: _Series, step: int | None = None) -> None:
        """The stride that keeps the statistics near the schedule's share of the loop's own time
        (at ``step``; default: the optimizer's count, which a steady cycle moves on later)."""
        now = time.perf_counter()
        n = s.n_steps if step is None else step
        steps = n - s.adapt_step
        if s.samples and steps > 0:
            s.stride = self.schedule.stride(s.stride, s.cost / s.samples, max(now - s.t_adapt, 1e-9) / steps)
        s.cost, s.samples, s.t_adapt, s.adapt_step = 0.0, 0, now, n

    # --- device reductions ------------------------------------------------------------------------
    def _flush(self, s: _Series) -> None:
        if not s.rows:
            return
        B = torch.stack(s.rows)  # (k, n) norms; -1 where there was no gradient
        dev = B.device
        steps = _steps_tensor(s.row_steps, dev)
        s.last_row_step = s.row_steps[-1]
        s.rows, s.row_steps = [], []
        k, n = B.shape
        present = B != -1
        fin = torch.isfinite(B)
        ok = fin & present
        bad = ~fin
        nz = (B != 0) | ~present  # a missing gradient breaks a run of zeros
        a = s.acc
        first = not a  # the first block: its figures are the accumulators (no neutral start to combine)
        first_bad = torch.where(bad, steps[:, None], _BIG).amin(0)
        a["first_bad"] = first_bad if first else torch.minimum(a["first_bad"], first_bad)
        # rows come in step order: the last all-finite row before the first bad one tells GW105
        # whether the step before a first NaN loss still had finite gradients (a NaN made in the forward)
        before_bad = bad.any(1).logical_not() & (steps < a["first_bad"].amin())
        last_ok = torch.where(before_bad, steps, 0.0).amax()
        a["last_ok"] = last_ok if first else torch.maximum(a["last_ok"], last_ok)
        last_nz = torch.where(nz, torch.arange(k, device=dev)[:, None], -1).amax(0)
        a["zero_run"] = torch.where(last_nz < 0, float(k) if first else a["zero_run"] + k,  # rows
                                    (k - 1 - last_nz).to(torch.float32))
        nz_step = torch.where(nz, steps[:, None], 0.0).amax(0)  # the last step with a non-zero gradient
        a["nz_step"] = nz_step if first else torch.maximum(a["nz_step"], nz_step)
        ever_nz = (nz & present).any(0)
        a["ever_nz"] = ever_nz if first else a["ever_nz"] | ever_nz
        good = ok & (B > 0)
        counts = {"sum_log": torch.where(good, B, 1.0).log10().sum(0),
                  "n_log": good.sum(0, dtype=torch.float32),
                  "n_present": present.sum(0, dtype=torch.float32),
                  "all_zero": ((B == 0) | ~present).all(1).logical_and(present.any(1)).sum(dtype=torch.float32)}
        for name, value in counts.items():
            a[name] = value if first else a[name] + value
        clean = torch.where(ok, B, 0.0)
        if s.n_rows == 0:  # the baseline: the first rows
            a["first_mean"], a["first_global"] = _means(clean[:_FIRST_BLOCK], ok[:_FIRST_BLOCK])
        a["last_mean"], a["last_global"] = _means(clean[-_TAIL:], ok[-_TAIL:])  # the latest rows
        s.n_rows += k
        self._nonfinite(bad.any(), "a gradient")

    def _flush_short_series_together(self) -> None:
        """The first (and only) block of many short series in one device reduction: a cell with
        1,000 optimizers that step a few times each costs a few dozen ops at its end, not 1,000
        flushes. The same figures as `_flush` per series, with the per-series reductions (rows'
        global norms, all-zero rows, the last finite step) done by segments of columns."""
        groups: dict[tuple, list[_Series]] = {}
        for s in self.series.values():
            if s.rows and s.n_rows == 0:  # (a series with earlier blocks goes its own way)
                groups.setdefault((s.rows[0].device, s.rows[0].dtype, len(s.rows)), []).append(s)
        for group in groups.values():
            if len(group) < 2:
                continue
            try:
                B = torch.cat([torch.stack(s.rows) for s in group], dim=1)  # (k, all columns)
            except RuntimeError:  # (rows of one series of unequal length: flushed one by one)
                continue
            self._flush_group(group, B)

    def _flush_group(self, group: list[_Series], B: torch.Tensor) -> None:
        dev = B.device
        first = group[0]
        k = B.shape[0]
        widths = [s.rows[0].shape[0] for s in group]
        segment = torch.repeat_interleave(torch.arange(len(group)), torch.tensor(widths)).to(dev)  # column -> series
        # the rows' step numbers, per column and per series: the same for all of them, or (1,000
        # optimizers taking turns) each series' own
        if all(s.row_steps == first.row_steps for s in group):
            col_steps = series_steps = _steps_tensor(first.row_steps, dev)[:, None]
        else:  # (at the end of the cell: the host-to-device copy waits for nothing more)
            series_steps = torch.tensor([s.row_steps for s in group], dtype=torch.float32).T.to(dev)
            col_steps = series_steps[:, segment]

        def by_series(columns: torch.Tensor) -> torch.Tensor:  # (k, columns) -> (k, series): sums
            out = torch.zeros((k, len(group)), dtype=columns.dtype, device=dev)
            return out.index_add_(1, segment, columns)

        present = B != -1
        fin = torch.isfinite(B)
        ok = fin & present
        bad = ~fin
        nz = (B != 0) | ~present
        first_bad = torch.where(bad, col_steps, _BIG).amin(0)
        series_first_bad = torch.full((len(group),), _BIG, device=dev).scatter_reduce(
            0, segment, first_bad, "amin")
        row_bad = by_series(bad.float()) > 0
        before_bad = row_bad.logical_not() & (series_steps < series_first_bad[None, :])
        last_ok = torch.where(before_bad, series_steps, 0.0).amax(0)
        last_nz = torch.where(nz, torch.arange(k, device=dev)[:, None], -1).amax(0)
        zero_run = torch.where(last_nz < 0, float(k), (k - 1 - last_nz).to(torch.float32))
        nz_step = torch.where(nz, col_steps, 0.0).amax(0).clamp(min=0)
        ever_nz = (nz & present).any(0)
        good = ok & (B > 0)
        sum_log = torch.where(good, B, 1.0).log10().sum(0)
        n_log = good.sum(0).float()
        n_present = present.sum(0).float()
        no_nonzero = by_series((~((B == 0) | ~present)).float()) == 0
        some_present = by_series(present.float()) > 0
        all_zero = (no_nonzero & some_present).sum(0).float()
        clean = torch.where(ok, B, 0.0)

        def means(rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
            mean = clean[rows].sum(0) / ok[rows].sum(0).clamp(min=1)
            squares = torch.zeros((clean[rows].shape[0], len(group)), dtype=torch.float64, device=dev)
            gnorm = squares.index_add_(1, segment, clean[rows].double().square()).sqrt()
            return mean, gnorm.mean(0).float()

        first_mean, first_global = means(slice(None, _FIRST_BLOCK))
        last_mean, last_global = means(slice(-_TAIL, None))
        # (at the end of the cell, where `finish` reads every figure anyway: read here, one host
        # read per figure for the whole group, and sliced per series as lists, not 13 reads and
        # 13 tensor slices per series)
        per_column = {"first_bad": first_bad, "zero_run": zero_run, "nz_step": nz_step, "ever_nz": ever_nz,
                      "sum_log": sum_log, "n_log": n_log, "n_present": n_present, "first_mean": first_mean,
                      "last_mean": last_mean}
        per_series = {"all_zero": all_zero, "last_ok": last_ok, "first_global": first_global,
                      "last_global": last_global}
        columns = {name: t.tolist() for name, t in per_column.items()}
        series = {name: t.tolist() for name, t in per_series.items()}
        start = 0
        for i, (s, width) in enumerate(zip(group, widths, strict=True)):
            end = start + width
            read = {name: values[start:end] for name, values in columns.items()}
            for name, values in series.items():
                read[name] = values[i]
            s.read = read
            start = end
            s.last_row_step = s.row_steps[-1]
            s.rows, s.row_steps = [], []
            s.n_rows += k
        self._nonfinite(bad.any(), "a gradient")

    def _flush_losses(self, s: _Series) -> None:
        if s.losses:
            s.chunks.append(torch.stack(s.losses))
            s.losses = []
        if not s.chunks:
            return
        try:
            v = torch.cat(s.chunks).to(torch.float32)
        except RuntimeError:  # losses on several devices
            s.chunks, s.n_chunked = [], 0
            return
        s.chunks, s.n_chunked = [], 0
        k = v.shape[0]
        dev = v.device
        idx = torch.arange(k, device=dev, dtype=torch.float32) + s.n_losses
        fin = torch.isfinite(v)
        fv = torch.where(fin, v, 0.0)
        a = s.lacc
        if not a:
            a["first_bad"] = torch.full((), _BIG, device=dev)
            a["sum"] = torch.zeros((), device=dev)
            a["n"] = torch.zeros((), device=dev)
            a["min"] = torch.full((), _BIG, device=dev)
            a["max"] = torch.full((), -_BIG, device=dev)
            f = min(k, _FIRST_LOSSES)
            a["first"] = fv[:f].sum() / fin[:f].sum().clamp(min=1)
            a["tail"] = v[:0]
        a["first_bad"] = torch.minimum(a["first_bad"], torch.where(fin, _BIG, idx).amin())
        a["sum"] += fv.sum()
        a["n"] += fin.sum()
        a["min"] = torch.minimum(a["min"], torch.where(fin, v, _BIG).amin())
        a["max"] = torch.maximum(a["max"], torch.where(fin, v, -_BIG).amax())
        a["tail"] = torch.cat([a["tail"], v])[-_FIRST_LOSSES:]
        s.n_losses += k
        self._nonfinite(~fin.all(), "the loss")

    def _nonfinite(self, flag: torch.Tensor, what: str) -> None:
        """(``flag``: see `_DeviceFlag`)"""
        if self.traced_after_nonfinite:
            return
        self.flag.post(flag, what)
        seen = self.flag.poll()
        if seen is not None:
            # trace the next iterations so that op_checks finds the op that makes NaN/Inf
            self.traced_after_nonfinite = True
            self.monitor.session.request_trace(2)
            self._tell(seen)

    def _tell(self, what: str) -> None:
        """GW105's news while the cell runs (see `news`), with where the loss's backward() is."""
        step = self.sampling_step or (self.last.n_steps if self.last is not None else 0)
        where = self.monitor.location(self.loss_position) if what == "the loss" else None
        self.monitor.session.tell("GW105", f"{what} became NaN/Inf by step {step:,}"
                         + (f" ({where.describe()})" if where is not None else ""))

    # --- results ---------------------------------------------------------------------------------
    def finish(self, namer: Any) -> list[Measurement]:
        if self.pending:
            s = self.series[max(self.series)] if self.series else self._no_step_series()
            s.losses += self.pending
            self.pending = []
        out: list[Measurement] = []
        session = self.monitor.session
        loss = self.monitor.location(self.loss_position)
        self.settle()
        self._flush_short_series_together()
        for key, s in self.series.items():
            if not (s.rows or s.acc or s.read or s.losses or s.chunks or s.lacc):
                continue  # never sampled, no loss: nothing measured (most of 1,000 optimizers)
            self._flush(s)
            self._flush_losses(s)
            opt = s.record.optimizer() if s.record is not None else None
            optimizer = OptimizerRef(key=key, name=(namer.optimizer_name(opt) if opt is not None else None)
                                     or (f"optimizer#{key}" if key else ""),
                                     location=session.optimizers.locations.get(key), steps=s.n_steps)
            if s.read is None and s.acc:
                s.read = {k: v.tolist() for k, v in s.acc.items()}  # the one host read
            grads = s.read
            if grads is not None:
                out.append(GradientStatistics(
                    optimizer, loss, params=LazyNames(s.params or [], namer.name),
                    numels=s.numels, ndims=s.ndims, sampled_steps=s.n_rows, last_sampled_step=s.last_row_step,
                    first_nonfinite_step=grads["first_bad"], zero_run=grads["zero_run"],
                    last_nonzero_step=grads["nz_step"], ever_nonzero=grads["ever_nz"],
                    sum_log10=grads["sum_log"], n_log10=grads["n_log"], n_present=grads["n_present"],
                    all_zero_rows=grads["all_zero"], first_mean=grads["first_mean"],
                    first_global=grads["first_global"], last_mean=grads["last_mean"],
                    last_global=grads["last_global"], last_finite_step=grads["last_ok"]))
            if s.lacc:
                losses: dict[str, Any] = {k: v.tolist() for k, v in s.lacc.items()}
                out.append(LossStatistics(
                    optimizer, loss, count=s.n_losses,
                    first_nonfinite=losses["first_bad"] if losses["first_bad"] != _BIG else None,
                    first_mean=losses["first"], tail=losses["tail"], finite_count=losses["n"],
                    finite_sum=losses["sum"], finite_min=losses["min"], finite_max=losses["max"]))
        return out

    def close(self) -> None:
        for s in self.series.values():
            s.params = None
            s.shapes = None
            s.read = None
            s.rows = []
            s.losses = []
        self.series.clear()
        self.pending = []
        self.last_record = None
        self.deferred, self.deferred_steps, self.deferred_widths = [], [], []
        self.deferred_grads, self.deferred_versions, self.deferred_series = [], [], set()


def _is_loss(root: torch.Tensor) -> bool:
    """A root of backward() that is followed as the loss: a scalar with values."""
    return root.dim() == 0 and root.is_floating_point() and not root.is_meta


def _steps_tensor(steps: list[int], device: torch.device) -> torch.Tensor:
    """The step numbers of a block's rows, made on the device: ``torch.tensor(list)`` would be a
    host-to-device copy (a sync on CUDA). The numbers are runs of one stride: one ``arange`` each
    (on the CPU, where there is nothing to wait for: the list as it is, one op)."""
    if device.type == "cpu":
        return torch.tensor(steps, dtype=torch.float32)
    runs, start = [], 0
    for i in range(1, len(steps) + 1):
        if i == len(steps) or (i - start >= 2 and steps[i] - steps[i - 1] != steps[start + 1] - steps[start]):
            first, last = steps[start], steps[i - 1]
            stride = steps[start + 1] - first if i - start >= 2 else 1
            runs.append(torch.arange(first, last + 1, stride, dtype=torch.float32, device=device))
            start = i
    return runs[0] if len(runs) == 1 else torch.cat(runs)


def _means(clean: torch.Tensor, ok: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-parameter mean norm and mean global norm of some rows."""
    mean = clean.sum(0) / ok.sum(0).clamp(min=1)
    gnorm = clean.double().square().sum(1).sqrt()  # float64: exploding norms overflow squares
    return mean, gnorm.mean().float()
