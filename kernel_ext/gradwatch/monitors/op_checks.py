"""Per-op measurements taken only while provenance tracing is on (``Provenance.observers``):
the loss calls and the ops that made their inputs (judged by GW109 softmax into cross-entropy,
GW110 sigmoid into BCELoss, GW111 loss shapes that broadcast) and, for GW105, the first forward
op whose output is not finite.

The non-finite check keeps one device value per traced op instead of reading it: whether the
tensor's largest magnitude is finite (``vector_norm(out, inf)``: NaN or Inf exactly when an
element is; on the CPU a 2-norm, checked again exactly where it is not finite, see
`_finite_flags`), so even traced iterations add no host-device sync; the values are read at
the end of the cell. The tensors wait in a queue and are checked together, one ``_foreach_norm`` (or one
stacked norm per shape, see `norms`) for up to 1,024 of them or 4M elements (a model of 10,000
small layers pays a call per thousand tensors, not one per tensor); the queue is checked before
anything can change their values: before an op that writes into a tensor (the tracing mode
asks, ``Provenance.before_write``), before a backward(), a step() or a zero_grad(), and when an
iteration ends. Each tensor is checked once per traced iteration:
an input that an earlier op of the iteration made (or that an earlier op read) has its flag
already, so an op costs one check for its output plus one for each input seen for the first time
(a parameter, the batch). Records are kept for a few traced iterations only (the first ones, and
the ones traced after `grad_stats` saw a NaN/Inf), so memory stays bounded in long loops.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from ..measurements import LossCall, Measurement, NonFiniteOrigin, ZeroIntoSingularOp
from .norms import grouped_norms, shape_groups

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
# tensors (and their elements) that wait for their check at most: the queue keeps them alive
# (the elements bound the memory; with a flush per 64 tensors, flushing was a third of the
# traced forward of the 10,000-tensor benchmark row: 470 ms, against 320 ms per 1,024)
_QUEUE_TENSORS = 1024
_QUEUE_ELEMENTS = 1 << 22


class OpChecks:
    def __init__(self, monitor: TrainingMonitor) -> None:
        self.monitor = monitor
        # (op, position, producer, broadcasts) -> the call's op, position, producer and shapes
        self.loss_calls: dict[tuple, tuple] = {}
        # traced iteration -> [(slot, op, position, *inputs)]: two values per input (its slot and
        # shape); a slot numbers a checked tensor within its iteration. Numbers, names and
        # positions only: the collector stops walking a record (thousands per iteration, their
        # number decides when it walks the whole heap)
        self.records: dict[int, list] = {}
        # traced iteration -> {an input's slot: its provenance node (its weak reference)}
        self.input_nodes: dict[int, dict[int, Any]] = {}
        # traced iteration -> [(slots, finite flags)]: the checks made, one device tensor each
        # (read at the end of the cell), or for CPU tensors a list of bools (read at once)
        self.checked: dict[int, list[tuple[Any, torch.Tensor | list[bool]]]] = {}
        # A tensor's slot in this iteration is kept on its provenance node (`Node.checked_in`,
        # `Node.check`): no object per tensor, which the garbage collector would walk
        self._nodes = monitor.session.provenance.nodes.by_id
        self._flags_step: int | None = None
        self._records_now: list = []  # records[_flags_step]
        self._input_nodes_now: dict[int, Any] = {}  # input_nodes[_flags_step]
        self._checked_now: list = []  # checked[_flags_step]
        self._slots = 0  # slots given out in this iteration
        self.queue: list[torch.Tensor] = []  # the last slots' tensors, not checked yet
        self._queued_elements = 0
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
        input_shape = list(inp.shape)
        # (not broadcastable: torch raises its own error)
        broadcast = _broadcast(input_shape, target_shape) \
            if target_shape is not None and input_shape != target_shape else None
        position = position_fn()
        # one record per call site and kind of input: a loop calls the same loss every iteration
        key = (op, position, producer, broadcast is not None)
        if key not in self.loss_calls and len(self.loss_calls) < _MAX_LOSS_CALLS:
            self.loss_calls[key] = (op, position, producer, producer_position, input_shape,
                                    target_shape, broadcast)

    # --- GW105: the first op that made a non-finite value -----------------------------------------
    def _finite(self, op: str, args: tuple, out: torch.Tensor, position_fn: Any) -> None:
        step = self.monitor.n_backward  # this forward belongs to iteration step + 1
        if step != self._flags_step:  # a new iteration: parameters and data may have changed
            self._start_iteration(step)
        records = self._records_now
        if len(records) >= _MAX_OPS:
            return
        nodes, input_nodes = self._nodes, self._input_nodes_now
        # inputs' flags too: at the end of the cell a parameter may be NaN because of this op
        record: list = [0, op, position_fn()]
        for a in args[:4]:
            if isinstance(a, torch.Tensor) and a.is_floating_point() and a.numel():
                node = nodes.get(id(a))  # (provenance.nodes.get, inline: the tracing mode made its node)
                if node is None or node() is not a:
                    continue
                if node.checked_in != step:  # a parameter, the batch: seen first in this iteration
                    node.checked_in, node.check = step, self._check(a)
                input_nodes[node.check] = node  # (what names it, if its value is the bad one)
                record += (node.check, tuple(a.shape))
        node = nodes.get(id(out))
        if node is None or node() is not out:  # (a tensor torch would not let the tracing mode inspect)
            return
        slot = record[0] = self._check(out)
        node.checked_in, node.check = step, slot  # (an in-place op: the tensor's slot from now on)
        records.append(tuple(record))
        if op in _SINGULAR_AT_ZERO and len(self.singular) < _MAX_SINGULAR and args \
                and isinstance(args[0], torch.Tensor) and args[0].requires_grad:
            self.singular.append(((args[0].detach() == 0).any(), op, position_fn()))

    def _check(self, t: torch.Tensor) -> int:
        """``t`` queued for its check: its slot in this iteration."""
        queue = self.queue
        if not queue:  # the tracing mode calls `flush` before an op writes into a queued tensor
            self.monitor.session.provenance.before_write = self.flush
        queue.append(t)
        self._queued_elements += t.numel()
        slot = self._slots
        self._slots = slot + 1
        if len(queue) >= _QUEUE_TENSORS or self._queued_elements >= _QUEUE_ELEMENTS:
            self.flush()
        return slot

    def flush(self) -> None:
        """The queued tensors checked now, before their values can change."""
        queue = self.queue
        if not queue:
            return
        self.queue = []
        self._queued_elements = 0
        self.monitor.session.provenance.before_write = None
        slots: range | list[int] = range(self._slots - len(queue), self._slots)
        by_shape = shape_groups(queue)  # (a model of many small layers on the CPU)
        if by_shape is not None:  # small tensors of one shape: stacked (see `norms`)
            groups, rest = by_shape
            with torch.no_grad():
                for group in groups:  # (one dtype each: the 2-norm's, see `_finite_flags`)
                    [(_, norms)] = grouped_norms(queue, [group], [], 2, _wide(queue[group[0]].dtype))
                    flags = _exact_on_cpu(norms.tolist(), [queue[i] for i in group])
                    self._checked_now.append(([slots[i] for i in group], flags))
            queue, slots = [queue[i] for i in rest], [slots[i] for i in rest]
            if not queue:
                return
        if len({(t.dtype, t.device) for t in queue}) == 1:  # (one model on one device)
            self._checked_now.append((slots, _finite_flags(queue)))
            return
        kinds: dict[tuple, tuple[list[int], list[torch.Tensor]]] = {}  # (a model on two devices)
        for slot, t in zip(slots, queue, strict=True):
            kind_slots, tensors = kinds.setdefault((t.dtype, t.device), ([], []))
            kind_slots.append(slot)
            tensors.append(t)
        for kind_slots, tensors in kinds.values():
            self._checked_now.append((kind_slots, _finite_flags(tensors)))

    def _start_iteration(self, step: int) -> None:
        self.flush()  # (the last iteration's slots)
        records = self.records.get(step)
        if records is None:
            if len(self.records) >= _KEEP_ITERATIONS:
                # keep the first iterations and the latest ones
                dropped = sorted(self.records)[2]
                del self.records[dropped]
                self.checked.pop(dropped, None)
                self.input_nodes.pop(dropped, None)
            records = self.records[step] = []
        self._records_now = records
        self._input_nodes_now = self.input_nodes.setdefault(step, {})
        self._checked_now = self.checked.setdefault(step, [])
        self._slots = sum(len(slots) for slots, _ in self._checked_now)  # (all checked: flushed above)
        self._flags_step = step

    def _finite_by_slot(self, step: int) -> dict[int, bool]:
        """The checks of one iteration read: one host read per device, at the end of the cell."""
        by_device: dict[Any, tuple[list, list[torch.Tensor]]] = {}
        finite: dict[int, bool] = {}
        for slots, flags in self.checked.get(step, ()):
            if isinstance(flags, list):  # (read already: CPU tensors' checks)
                finite.update(zip(slots, flags, strict=True))
                continue
            all_slots, all_flags = by_device.setdefault(flags.device, ([], []))
            all_slots.extend(slots)
            all_flags.append(flags)
        for all_slots, all_flags in by_device.values():
            finite.update(zip(all_slots, torch.cat(all_flags).tolist(), strict=True))
        return finite

    def _origin(self, namer: Any) -> NonFiniteOrigin | None:
        self.flush()
        for step in sorted(self.records):
            records = self.records[step]
            if not records:
                continue
            finite = self._finite_by_slot(step)
            for slot, op, position, *inputs in records:
                if finite.get(slot, True):
                    continue
                bad_inputs = []
                nodes = self.input_nodes.get(step, {})
                for input_slot, shape in zip(inputs[::2], inputs[1::2], strict=True):
                    if not finite.get(input_slot, True):
                        node = nodes.get(input_slot)
                        t = node() if node is not None else None
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
        self.queue = []
        self._queued_elements = 0
        if self.monitor.session.provenance.before_write == self.flush:
            self.monitor.session.provenance.before_write = None
        self.records.clear()
        self.input_nodes.clear()
        self._input_nodes_now = {}
        self.checked.clear()
        self._checked_now = []
        self._flags_step = None
        self._records_now = []
        self.singular.clear()
        self.loss_calls.clear()


_INF = float("inf")


def _broadcast(a: list[int], b: list[int]) -> list[int] | None:
    """The shape ``a`` and ``b`` broadcast to, None if they do not (``torch.broadcast_shapes``'
    rule, without its Python loop over tensors and the exception a class-index target's shape
    raises in it: every traced cross-entropy call)"""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and x != 1 and y != 1:
            return None
        out.append(y if x == 1 else x)
    out.reverse()
    return out


_vector_norm = torch.linalg.vector_norm


def _finite_flags(tensors: list[torch.Tensor]) -> torch.Tensor | list[bool]:
    """Whether each tensor (of one dtype, on one device, not empty) is finite, one value each:
    a bool device tensor, or for CPU tensors a list of bools.

    Off the CPU: the largest magnitude of each (``_foreach_norm(inf)``, one fused kernel), NaN or
    Inf exactly when one of its elements is (NaN propagates through the max, an Inf is its own
    maximum); read at the end of the cell. On the CPU that norm has no vectorized kernel (14 ms
    for the 5M activation values of a small ResNet's traced forward, against 0.5 ms for the
    2-norm), so the 2-norm is taken there, NaN or Inf whenever an element is, and read at once
    (on the CPU a read is no device sync); its squares may also overflow for a large but finite
    tensor, so a non-finite one is checked again exactly (`_exact_on_cpu`)."""
    # without autograd: a norm of a tensor that requires grad would record a node that saves
    # it, which torch.utils.checkpoint counts
    on_cpu = tensors[0].is_cpu
    ord, dtype = (2.0, _wide(tensors[0].dtype)) if on_cpu else (_INF, None)
    with torch.no_grad():
        try:
            norms = torch._foreach_norm(tensors, ord, dtype=dtype)  # pyright: ignore[reportPrivateImportUsage, reportArgumentType, reportCallIssue]
        except (RuntimeError, TypeError, NotImplementedError):  # (a layout foreach does not take)
            norms = [_vector_norm(t, ord, dtype=dtype) for t in tensors]
        if on_cpu:
            return _exact_on_cpu(torch.stack(norms).tolist(), tensors)
        return torch.stack(norms).isfinite()


def _wide(dtype: torch.dtype) -> torch.dtype | None:
    """The dtype a CPU 2-norm is computed in: float32 for half-precision tensors (whose 2-norm
    overflows its own range far sooner than any element does)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else None


def _exact_on_cpu(norms: list[float], tensors: list[torch.Tensor]) -> list[bool]:
    """Whether each of the CPU ``tensors`` is finite, from their 2-norms: a tensor whose 2-norm is
    not finite is checked again by its largest magnitude, non-finite only if an element is (a
    2-norm also overflows when a large but finite tensor's squares do)."""
    flags = [math.isfinite(v) for v in norms]
    if not all(flags):
        for i, ok in enumerate(flags):
            if not ok:
                flags[i] = bool(_vector_norm(tensors[i], _INF).isfinite())
    return flags
