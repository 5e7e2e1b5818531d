"""Per-op measurements taken only while provenance tracing is on (``Provenance.observers``):
the loss calls and the ops that made their inputs (judged by GW109 softmax into cross-entropy,
GW110 sigmoid into BCELoss, GW111 loss shapes that broadcast) and, for GW105, the first forward
op whose output is not finite.

The non-finite check keeps one device value per traced op instead of reading it, the tensor's
largest magnitude (``vector_norm(out, inf)``: NaN or Inf exactly when an element is; one kernel,
where ``isfinite(out).all()`` is several), so even traced iterations add no host-device sync; the
values are read at the end of the cell. Each tensor is checked once per traced iteration: an
input that an earlier op of the iteration made (or that an earlier op read) has its flag
already, so an op costs one check for its output plus one for each input seen for the first
time (a parameter, the batch). Records are kept for a few traced iterations only (the first
ones, and the ones traced after `grad_stats` saw a NaN/Inf), so memory stays bounded in long
loops.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import torch

from ..measurements import LossCall, Measurement, NonFiniteOrigin, ZeroIntoSingularOp
from ..trace.provenance import TensorMap

if TYPE_CHECKING:
    from .training import TrainingMonitor

_CE = {"cross_entropy", "nll_loss"}
_BCE = {"binary_cross_entropy"}
_BCE_LOGITS = {"binary_cross_entropy_with_logits"}
_REGRESSION = {"mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"}
_LOSSES = _CE | _BCE | _BCE_LOGITS | _REGRESSION
# uninitialized memory (parameter creation) may hold anything: not a forward op's result
_UNINITIALIZED = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "Tensor"}
_MAX_OPS = 4096  # per traced iteration
# ops whose derivative is infinite (or NaN) where their input is exactly 0: a NaN that first shows
# in backward() comes from one of these
_SINGULAR_AT_ZERO = {"sqrt", "rsqrt", "log", "log2", "log10", "norm", "cdist", "acos", "asin"}
_MAX_SINGULAR = 256
_KEEP_ITERATIONS = 4
_MAX_LOSS_CALLS = 32


class OpChecks:
    def __init__(self, monitor: TrainingMonitor) -> None:
        self.monitor = monitor
        # (op, position, producer, broadcasts) -> the call's op, position, producer and shapes
        self.loss_calls: dict[tuple, tuple] = {}
        # traced iteration (provenance.step) -> [(finite flag, op, position, *input entries)]
        self.records: dict[int, list] = {}
        # this traced iteration's flags: tensor -> its finite flag (as the iteration found it),
        # or, once an op read it, its input entry (weak reference, flag, shape; records share it)
        self._flags = TensorMap()
        self._flags_step: int | None = None
        self._records_now: list = []  # records[_flags_step]
        self.singular: list = []  # (device flag: input has an exact 0, op, position), traced ops only

    def observe(self, op: str, args: tuple, kwargs: dict, out: Any, position_fn: Any) -> None:
        if op in _LOSSES:
            self._loss(op, args, kwargs, position_fn)
        if isinstance(out, torch.Tensor) and out.is_floating_point() and out.numel() \
                and op not in _UNINITIALIZED and not op.startswith("."):  # .grad/.data: a read
            self._finite(op, args, out, position_fn)

    # --- loss calls (GW109-GW111 judge them) ---------------------------------------------------------
    def _loss(self, op: str, args: tuple, kwargs: dict, position_fn: Any) -> None:
        inp = args[0] if args else kwargs.get("input")
        target = args[1] if len(args) > 1 else kwargs.get("target")
        if not isinstance(inp, torch.Tensor):
            return
        node = self.monitor.session.provenance.nodes.get(inp)
        producer, producer_position = (node.op, node.pos) if node is not None else (None, None)
        target_shape = list(target.shape) if isinstance(target, torch.Tensor) else None
        broadcast = None
        if target_shape is not None and list(inp.shape) != target_shape:
            try:
                broadcast = list(torch.broadcast_shapes(inp.shape, torch.Size(target_shape)))
            except RuntimeError:
                pass  # not broadcastable: torch raises its own error
        position = position_fn()
        # one record per call site and kind of input: a loop calls the same loss every iteration
        key = (op, position, producer, broadcast is not None)
        if key not in self.loss_calls and len(self.loss_calls) < _MAX_LOSS_CALLS:
            self.loss_calls[key] = (op, position, producer, producer_position, list(inp.shape),
                                    target_shape, broadcast)

    # --- GW105: the first op that made a non-finite value -----------------------------------------
    def _finite(self, op: str, args: tuple, out: torch.Tensor, position_fn: Any) -> None:
        step = self.monitor.n_backward  # this forward belongs to iteration step + 1
        if step != self._flags_step:  # a new iteration: parameters and data may have changed
            self._start_iteration(step)
        records = self._records_now
        if len(records) >= _MAX_OPS:
            return
        flags = self._flags
        # inputs' flags too: at the end of the cell a parameter may be NaN because of this op
        inputs = []
        by_id = flags.by_id
        for a in args[:4]:
            if isinstance(a, torch.Tensor) and a.is_floating_point() and a.numel():
                ref = by_id.get(id(a))  # (flags.get, inline)
                entry = ref.value if ref is not None and ref() is a else None
                inputs.append(entry if type(entry) is tuple else _input_entry(flags, a, entry))
        finite = _finite_flag(out)
        flags[out] = finite  # (an in-place op: the tensor's flag from now on)
        records.append((finite, op, position_fn(), *inputs))  # (one object per op: its inputs inline)
        if op in _SINGULAR_AT_ZERO and len(self.singular) < _MAX_SINGULAR and args \
                and isinstance(args[0], torch.Tensor) and args[0].requires_grad:
            self.singular.append(((args[0].detach() == 0).any(), op, position_fn()))

    def _start_iteration(self, step: int) -> None:
        records = self.records.get(step)
        if records is None:
            if len(self.records) >= _KEEP_ITERATIONS:
                # keep the first iterations and the latest ones
                del self.records[sorted(self.records)[2]]
            records = self.records[step] = []
        self._records_now = records
        self._flags = TensorMap()
        self._flags_step = step

    def _origin(self, namer: Any) -> NonFiniteOrigin | None:
        for step in sorted(self.records):
            records = self.records[step]
            if not records:
                continue
            flags = torch.stack([r[0] for r in records]).isfinite().tolist()  # the one host read
            for ok, (_, op, position, *inputs) in zip(flags, records, strict=True):
                if ok:
                    continue
                bad_inputs = []
                for ref, finite, shape in inputs:
                    if not bool(finite.isfinite()):
                        t = ref()
                        bad_inputs.append((namer.name(t) if t is not None else None)
                                          or f"a tensor of shape {shape}")
                return NonFiniteOrigin(op=op, location=self.monitor.location(position), inputs=bad_inputs,
                                       iteration=step + 1)
        return None

    def finish(self, namer: Any) -> list[Measurement]:
        out: list[Measurement] = []
        loc = self.monitor.location
        origin = self._origin(namer)
        if origin is not None:
            out.append(origin)
        if self.singular:
            flags = torch.stack([s[0] for s in self.singular]).tolist()  # one host read, at the end
            hit = next((s for ok, s in zip(flags, self.singular, strict=True) if ok), None)
            if hit is not None:
                out.append(ZeroIntoSingularOp(op=hit[1], location=loc(hit[2])))
        for op, position, producer, producer_position, input_shape, target_shape, broadcast in \
                self.loss_calls.values():
            out.append(LossCall(op=op, location=loc(position), producer=producer,
                                producer_location=loc(producer_position), input_shape=input_shape,
                                target_shape=target_shape, broadcast_shape=broadcast))
        return out

    def close(self) -> None:
        self.records.clear()
        self._flags = TensorMap()
        self._flags_step = None
        self._records_now = []
        self.singular.clear()
        self.loss_calls.clear()


_INF = float("inf")
_vector_norm = torch.linalg.vector_norm


def _finite_flag(t: torch.Tensor) -> torch.Tensor:
    """``t``'s largest magnitude (a 0-dim tensor of t's dtype; ``t`` not empty): finite exactly
    when every element is (NaN propagates through the max, an Inf is its own maximum)."""
    # detached: the norm would record an autograd node that saves ``t``, which
    # torch.utils.checkpoint counts
    return _vector_norm(t.detach(), _INF)


def _input_entry(flags: TensorMap, t: torch.Tensor, flag: torch.Tensor | None) -> tuple:
    """``t``'s input entry in this iteration (weak reference, flag, shape), made once per tensor
    and iteration and shared by the records: the flag an earlier op left, else checked now."""
    entry = (weakref.ref(t), flag if flag is not None else _finite_flag(t), tuple(t.shape))
    flags[t] = entry
    return entry
