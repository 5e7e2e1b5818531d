"""What the per-step monitors measured in a watched cell (``Events.measurements``).

Monitors (``monitors/``) only measure and name: the order of ``backward()``/``step()``/
``zero_grad()`` calls they saw, the statistics of gradients and losses, the loss calls of the
traced iterations. Whether a measurement is a problem, and from which threshold on, is decided
by the rule modules (``rules/gw1*.py``), each of which owns its thresholds. Plain data: names,
numbers and `Location`s; no tensors once the rules ran (`LazyNames`: the names of a gradient
statistics' parameters, worked out when a rule reads one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from .diagnostics import Location


class LazyNames(Sequence[str]):
    """The user's names of a list of tensors, each worked out when it is first read. A rule
    reads only the few it reports, so a clean cell names none of a model's 10,000 parameters
    (naming them reads what every model and container in the notebook holds). `seal`, after
    the rules ran, drops the tensors: a name not read by then is its fallback, ``param <i>``."""

    __slots__ = ("_objects", "_name_of", "_names", "_len")

    def __init__(self, objects: Sequence[Any], name_of: Callable[[Any], str | None]) -> None:
        self._objects: Sequence[Any] | None = objects
        self._name_of: Callable[[Any], str | None] | None = name_of
        self._names: dict[int, str] = {}
        self._len = len(objects)

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        i = index + self._len if index < 0 else index
        if not 0 <= i < self._len:
            raise IndexError(index)
        name = self._names.get(i)
        if name is None:
            objects, name_of = self._objects, self._name_of
            name = (name_of(objects[i]) if objects is not None and name_of is not None else None) or f"param {i}"
            if objects is not None:
                self._names[i] = name
        return name

    def seal(self) -> None:
        """No reference to the tensors any more (the cell is over)."""
        self._objects = self._name_of = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and not isinstance(other, str) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LazyNames({list(self)!r})"


@dataclass
class OptimizerRef:
    """The optimizer a measurement is about."""

    key: int
    name: str  # the user's variable, else ``optimizer#<key>``; "" for losses no optimizer steps after (key 0)
    location: Location | None = None  # where it was built
    steps: int = 0  # its step() calls in the cell


@dataclass
class Measurement:
    """Base class: something one monitor measured about one optimizer (or the cell)."""


# --- the order of backward(), step() and zero_grad() (step_order) -----------------------------------
@dataclass
class AccumulatedIntoUsedGradient(Measurement):
    """A ``backward()`` added to the gradient that the previous ``step()`` already used, and
    the next ``step()`` used that sum: nothing cleared the gradients between the steps."""

    optimizer: OptimizerRef
    backward: Location | None
    step: Location | None
    zero_grad: Location | None  # a zero_grad() of this optimizer seen elsewhere in the cell
    step_index: int


@dataclass
class ClearedUnusedGradients(Measurement):
    """``zero_grad()`` cleared gradients of ``backward()`` calls that no ``step()`` had used.

    ``then`` is what came next: ``"step"`` (the step found the cleared gradients, with no
    ``backward()`` in between) or ``"backward"`` (a new backward started; the optimizer may
    step later, after the last of several such micro-batches)."""

    optimizer: OptimizerRef
    then: str  # "step" | "backward"
    zero_grad: Location | None
    backward: Location | None  # the backward() whose gradients were cleared (its latest call)
    step: Location | None  # the optimizer's step() (its latest position seen)
    backwards_cleared: int  # backward() calls whose gradients the first such zero_grad() cleared
    times: int  # zero_grad() calls that cleared unused gradients, followed by a backward()


@dataclass
class StepWithoutBackward(Measurement):
    """``step()`` with no ``backward()`` since the optimizer's previous step (none inside the
    step either: a closure's backward counts)."""

    optimizer: OptimizerRef
    step: Location | None
    backward: Location | None  # the latest backward() seen before it
    no_gradient: bool  # none of its parameters had a gradient at all
    params: list[str] = field(default_factory=list)


@dataclass
class NeverStepped(Measurement):
    """An optimizer built in the cell, ``backward()`` called, and ``step()`` never."""

    optimizer: OptimizerRef
    backward: Location | None
    zero_grad: Location | None
    backward_calls: int


@dataclass
class LearningRateZero(Measurement):
    """Every parameter group had learning rate 0 at a step; ``at_last_check`` tells whether it
    still had at the last step checked (a warm-up schedule raises it)."""

    optimizer: OptimizerRef
    step: Location | None
    at_last_check: bool
    params: list[str] = field(default_factory=list)


@dataclass
class EvalModeAtStep(Measurement):
    """A module whose parameters the optimizer trains had dropout (or a batch norm whose own
    parameters train) in eval mode at a step."""

    optimizer: OptimizerRef
    module: str
    submodules: list[str]
    eval_call: Location | None  # the module's (or a submodule's) `.eval()` that was watched
    step: Location | None
    step_index: int
    train_called: bool  # some `module.train()` ran in the cell


# --- gradient norms and losses (grad_stats) -------------------------------------------------------
@dataclass
class GradientStatistics(Measurement):
    """Per-parameter statistics of the gradient norms at the sampled steps of one optimizer.

    Lists are indexed like ``params``. A missing gradient (None) counts as present=False."""

    optimizer: OptimizerRef
    loss: Location | None  # the first `loss.backward()` of the cell
    params: Sequence[str]  # (a `LazyNames` from the monitor: named when read)
    numels: list[int]
    ndims: list[int]
    sampled_steps: int  # rows: steps whose norms were measured
    last_sampled_step: int  # the step number of the last row
    first_nonfinite_step: list[float]  # per parameter; inf when always finite
    zero_run: list[float]  # sampled steps with an exactly zero (or no) gradient, up to the end
    last_nonzero_step: list[float]
    ever_nonzero: list[bool]
    sum_log10: list[float]  # sum of log10 of the finite positive norms
    n_log10: list[float]  # how many norms that sum holds
    n_present: list[float]  # rows with a gradient
    all_zero_rows: float  # rows in which every present gradient was exactly 0
    first_mean: list[float] = field(default_factory=list)  # mean norm over the first block
    first_global: float = 0.0  # mean global norm over the first block
    last_mean: list[float] = field(default_factory=list)  # ... over the latest rows
    last_global: float = 0.0
    last_finite_step: float = 0.0  # the latest sampled step before the first non-finite one


@dataclass
class LossStatistics(Measurement):
    """Statistics of the scalar losses that one optimizer's steps follow."""

    optimizer: OptimizerRef
    loss: Location | None
    count: int
    first_nonfinite: float | None  # 0-based index of the first non-finite loss
    first_mean: float  # mean of the first (finite) losses
    tail: list[float]  # the latest losses
    finite_count: float
    finite_sum: float
    finite_min: float
    finite_max: float


# --- traced iterations (op_checks) -----------------------------------------------------------------
@dataclass
class LossCall(Measurement):
    """A loss function called in a traced iteration, and the op that made its input."""

    op: str  # aten-level name: cross_entropy, nll_loss, binary_cross_entropy, mse_loss, ...
    location: Location | None
    producer: str | None  # the op that made the input (softmax, sigmoid, ...)
    producer_location: Location | None
    input_shape: list[int]
    target_shape: list[int] | None
    broadcast_shape: list[int] | None  # when input and target differ but broadcast


@dataclass
class NonFiniteOrigin(Measurement):
    """The first traced forward op whose output was not finite."""

    op: str
    location: Location | None
    inputs: list[str]  # its inputs that already held NaN/Inf
    iteration: int


@dataclass
class ZeroIntoSingularOp(Measurement):
    """A traced op whose derivative is infinite at 0 (sqrt, log, norm ...) got an exact 0."""

    op: str
    location: Location | None
