"""Plain records of what happened in a watched cell: the only input of the rules.

The trace layer turns live tensors, optimizers and frames into these (names and source
ranges, no tensors), so rules can be tested on recorded events and gradwatch keeps no user
object alive after the cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .diagnostics import Location
from .measurements import Measurement


@dataclass
class TensorFact:
    """A tensor the user trains (an optimizer's parameter, or one whose ``.grad`` is used)."""

    name: str
    kind: str  # "parameter" (nn.Parameter) or "tensor"
    requires_grad: bool
    is_leaf: bool
    created: Location | None = None  # the expression that made it
    made_non_leaf: Location | None = None  # the op that turned it into a non-leaf
    owners: list[str] = field(default_factory=list)  # optimizer names
    owner_keys: list[int] = field(default_factory=list)  # the same optimizers' keys
    owner_locations: list[Location] = field(default_factory=list)
    shape: tuple[int, ...] = ()
    frozen: Location | None = None  # where `requires_grad = False` / `requires_grad_(False)` ran
    # the plain list/dict attribute (`model.hids`) that holds its module unregistered, and where
    # that attribute is assigned
    unregistered_in: str | None = None


@dataclass
class Cut:
    """A place where data flows on but gradient stops."""

    kind: str  # detach | data | no_grad | inference_mode | nondiff | zero_grad | escape
    op: str
    location: Location | None
    context: Location | None = None  # the `with torch.no_grad():` around it, the re-wrap ...
    cut_off: list[str] = field(default_factory=list)  # names of the trainables behind it
    input_text: str | None = None  # source of the tensor it was applied to, for fixes
    # what the user edits when that is not the op itself: the `with torch.no_grad():` header
    # (also up the call stack), or the call inside a `@torch.no_grad()` function
    scope: Location | None = None
    # set when the cut makes a whole additive term of the loss a constant (`loss = task +
    # 0.1 * reg(w.detach())`): where that term is computed
    dead_term: Location | None = None
    # for a term that trains other tensors too: the keys of the optimizers those belong to
    term_trains: frozenset[int] | None = None


@dataclass
class Flow:
    """How a traced backward's roots relate to the trainable tensors."""

    loss_name: str | None
    # the trainables autograd reaches, named when a finding is compared with them (else empty:
    # see `Watch._reached_named_later`)
    reached: list[str] = field(default_factory=list)
    unreached: list[TensorFact] = field(default_factory=list)
    direct: list[str] = field(default_factory=list)  # unreached, but data flows without a cut
    cuts: list[Cut] = field(default_factory=list)
    reached_unowned: list[TensorFact] = field(default_factory=list)  # in no optimizer


@dataclass
class OptimizerEvent:
    """An optimizer built in the cell (or adopted from an earlier one), as it was then."""

    key: int
    name: str | None
    location: Location | None
    # its parameters (the first 512 of each group), made only when one of them is frozen or
    # not a leaf (what GW001/GW004/GW008 report): empty when every one is a trainable leaf
    params: list[TensorFact]
    error: str | None = None


@dataclass
class BackwardEvent:
    index: int
    location: Location | None
    flow: Flow | None = None
    explain: dict[str, Any] = field(default_factory=dict)  # facts gathered for an error
    # keys of the optimizers whose next step() used this backward's gradients: a cut matters
    # for the tensors those optimizers train (a GAN's D step detaches G's output on purpose)
    consumers: list[int] = field(default_factory=list)
    steps_before: int = 0  # optimizer steps taken before this backward() (two losses, one iteration)
    reached_optimizers: set[int] = field(default_factory=set)  # whose parameters autograd reaches


@dataclass
class StepEvent:
    optimizer: int
    name: str | None
    location: Location | None
    backwards_since_step: int
    without_grad: list[TensorFact] = field(default_factory=list)
    n_params: int = 0


@dataclass
class GradReadEvent:
    """``.grad`` read on a non-leaf tensor (it is always None)."""

    location: Location | None
    tensor: TensorFact


@dataclass
class InputScale:
    """A data tensor the traced loss was computed from, measured when the training misbehaved."""

    name: str
    created: Location | None
    max_abs: float
    target: bool = False  # a loss function's target rather than the model's input


@dataclass
class GradNoneEvent:
    """The cell failed reading a ``.grad`` that is ``None``; why it is ``None``.

    ``reason``: ``before_backward`` (no backward() had run), ``no_requires_grad`` (created
    without it), ``rebound`` (the name now holds a new tensor made under ``no_grad``/by
    ``.detach()``), ``non_leaf``, ``cut`` (the loss reaches it only through a cut), ``dropped`` (the forward used
    it but the loss leaves that output out) or ``unused``
    (the loss does not use it).
    """

    read: Location  # the failing line
    expression: str  # `w.grad`
    tensor: TensorFact
    reason: str
    cause: Location | None = None
    cut_op: str | None = None
    cut_kind: str | None = None


@dataclass
class InplaceLeafEvent:
    """The cell failed on an in-place op on a leaf that requires grad (or a view of one)."""

    location: Location
    view: bool
    target: str | None  # the name written in place, as the line spells it


@dataclass(frozen=True)
class StepCounts:
    """One optimizer's ``step()`` calls so far, and what the missing-gradient check saw."""

    steps: int = 0
    checked: int = 0  # steps checked for parameters without a gradient (a long loop: a sample)
    missing: int = 0  # checked steps that found some


@dataclass
class Events:
    """Everything recorded in one watched cell, in order of kind."""

    optimizers: list[OptimizerEvent] = field(default_factory=list)
    # optimizers built before this cell, as they were when the cell first used them
    adopted_optimizers: list[OptimizerEvent] = field(default_factory=list)
    backwards: list[BackwardEvent] = field(default_factory=list)
    steps: list[StepEvent] = field(default_factory=list)
    grad_reads: list[GradReadEvent] = field(default_factory=list)
    n_backward: int = 0
    n_steps: int = 0
    # optimizer key -> its counts, of those whose checks found a parameter without a gradient
    step_counts: dict[int, StepCounts] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)  # the per-step monitors'
    cell_error: str | None = None  # the exception type the cell ended with, if it raised
    cell_failure: GradNoneEvent | InplaceLeafEvent | None = None  # that exception, explained
    inputs: list[InputScale] = field(default_factory=list)  # measured only when the loss misbehaved
    optimizer_locations: dict[int, Location] = field(default_factory=dict)  # key -> where it was built
    internal_errors: list[str] = field(default_factory=list)
