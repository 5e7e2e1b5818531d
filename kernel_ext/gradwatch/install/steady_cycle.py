"""The steady cycle: the steps of a training loop on which no check is due, at the cost of counting.

Past the traced iterations, most steps of a loop run ``zero_grad()``, one ``backward()`` of a
scalar loss and ``step()`` of the same optimizer, and on most of them no check is due: the
schedule samples gradient norms every so many steps, probes and checks every so many more. The
per-step hooks of those steps only keep counters and the loss. That bookkeeping spread over the
session and three monitor parts cost more than a small model's step is allowed to.

From the 4th step on (the first three keep the positions of their calls), after a step whose
checks are done, the session asks the monitor how many of this optimizer's next steps need
nothing of it but what the cycle does itself (`TrainingMonitor.cycle_plan`) and arms a
`SteadyCycle` for them, up to the next multiple of `StepSchedule.cycle_every` (1,024) at most.
While armed, each hook only checks that the call is the next one of the cycle (this
optimizer's ``zero_grad()``, a ``backward()`` of a plain tensor, this optimizer's ``step()``
without arguments) and keeps the loss. The steps with sampled work do it in the cycle's step
hook, as the full path would, on the schedule's steps (`StepSchedule`; every step of a loop's
first ones, then every so many): a sample of gradient norms at each multiple of the stride (every
step before the first stride decision; every step of a GPU model's); the probe for an uncleared
gradient (the cycle's next ``zero_grad()`` clears that gradient, so the probe matters only if
the loop leaves the cycle there, with no ``zero_grad()``: the cycle keeps its last probe, which
becomes the optimizer's when it settles); the missing-gradient check, which takes the full path
instead if a parameter has no gradient (an event to record, a trace to start); the eval-mode
and learning-rate check (every 64th; a zero learning rate ends the cycle); and the monitor's
statistics where the losses fill a chunk and the stride of the samples is decided on one step
(every 32nd in a loop of one loss per step; `TrainingMonitor.stats_in_cycle`, which says where
the next one is, or that the cycle ends before it). So a long loop of the benchmark's MLP takes
the full path once every 1,024 steps. Any other call, a step whose work the cycle does not do,
compiled code that starts to run, and the end of the cell settle it first: the counters, and the
monitor's state through `TrainingMonitor.after_quiet`, become what the per-step hooks would have
made of the calls the cycle took, and the call takes the full path. What the rules see is the
same either way (checked by ``tests/unit/test_steady_cycle.py`` against sessions with the cycle
switched off).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..monitors.schedule import next_multiple
from .optimizer_table import OptimizerRecord

if TYPE_CHECKING:
    from ..monitors.schedule import StepSchedule

# the call the cycle expects next
ZERO_GRAD, BACKWARD, STEP = 0, 1, 2
_NEVER = 1 << 62  # (a step no loop reaches)


class SteadyCycle:
    """One optimizer's cycle, armed at one of its steps (before that step runs).

    Each call it takes moves ``expect`` on (zero_grad -> backward -> step -> zero_grad ...) and a
    step counts itself: the zero_grad() and backward() calls it took follow from the steps and
    from where in the cycle it is (no counter of their own to keep on every call)."""

    __slots__ = ("ref", "record", "expect", "limit", "n_backward", "next", "losses", "at", "stride",
                 "schedule", "due", "next_check", "next_probe", "next_eval", "next_sample", "probe", "probed",
                 "stats_at", "handed")

    def __init__(self, record: OptimizerRecord, steps_left: int, n_backward: int, schedule: StepSchedule,
                 stride: int = 0, monitored: bool = False, stats_at: int = 0) -> None:
        self.ref = record.ref  # the optimizer (weak: a cycle keeps nothing of the user's alive)
        self.record = record
        self.expect = ZERO_GRAD
        self.limit = steps_left  # steps it may take; the next one takes the full path
        self.n_backward = n_backward  # backward calls when it was armed
        self.losses: list[Any] = []  # the losses of the backward calls it took (detached)
        self.at = at = record.steps  # the optimizer's step count when it was armed
        # the number of the next step it takes (its steps are counted by this one number, which
        # the step hook compares with ``due``: the step after its last one is due, too)
        self.next = at + 1
        # the steps whose number is a multiple of this take a sample of gradient norms, as the
        # full path would (0: none; the first steps of a loop sample every one)
        self.stride = stride
        # the schedule's steps that are checked for parameters without a gradient and, if
        # ``monitored`` (a monitor is on), leave a probe on a gradient and are checked for
        # modules in eval mode: the next of each kind is kept, so that a due step asks the
        # schedule only about the kinds it does
        self.schedule = schedule
        self.next_check = schedule.next_missing_check(at)
        self.next_probe = schedule.next_probe(at) if monitored else _NEVER
        self.next_eval = schedule.next_eval_check(at) if monitored else _NEVER
        self.next_sample = next_multiple(at, stride) if stride > 0 else _NEVER
        # the next step at which the monitor's statistics stack the losses and decide the stride
        # of the samples (0: none in the cycle): done in the cycle, as the full path would
        # (`TrainingMonitor.stats_in_cycle`), which says the next one; the losses of the steps
        # before it are the series' from then on, and ``losses`` keeps only those after them
        self.stats_at = stats_at
        self.handed = 0  # steps whose losses were handed to the statistics
        self.due = self.next_due()  # the next step that samples, probes or checks
        # its last probe (the monitor's: `TrainingMonitor.probe_in_cycle`), the optimizer's probe
        # when the cycle settles, and `steps` when it was left (-1: none)
        self.probe: Any = None
        self.probed = -1

    def next_due(self) -> int:
        """The next step that samples, probes, checks or does the statistics' work, or the step
        after its last (the full path's, `_due_in_cycle` says)."""
        due = min(self.next_check, self.next_probe, self.next_eval, self.next_sample, self.at + self.limit + 1)
        return min(due, self.stats_at) if self.stats_at else due

    def work_at(self, step: int) -> tuple[bool, bool, bool, bool]:
        """What the due ``step`` does: (checks for parameters without a gradient, samples
        gradient norms, probes, checks for modules in eval mode); the next step of each kind it
        does is found."""
        schedule = self.schedule
        checks = step == self.next_check
        if checks:
            self.next_check = schedule.next_missing_check(step)
        samples = step == self.next_sample
        if samples:
            self.next_sample = next_multiple(step, self.stride)
        probes = step == self.next_probe
        if probes:
            self.next_probe = schedule.next_probe(step)
        evals = step == self.next_eval
        if evals:
            self.next_eval = schedule.next_eval_check(step)
        return checks, samples, probes, evals

    def restride(self, step: int, stride: int, stats_at: int, last: int) -> None:
        """The statistics' work at ``step``: the stride of the samples from now on (0: none), the
        next step of that work (0: none in the cycle) and the last step the cycle may take."""
        self.stride = stride
        self.next_sample = next_multiple(step, stride) if stride > 0 else _NEVER
        self.stats_at = stats_at
        self.limit = min(self.limit, last - self.at)

    @property
    def steps(self) -> int:
        """Steps it took."""
        return self.next - self.at - 1

    @property
    def zero_grads(self) -> int:
        """zero_grad() calls it took: one per step, and one more past its last step."""
        return self.steps + (self.expect != ZERO_GRAD)

    @property
    def backwards(self) -> int:
        """backward() calls it took: one per step, and one more waiting for its step."""
        return self.steps + (self.expect == STEP)

    @property
    def backwards_since_probe(self) -> int:
        """backward() calls it took after its last probe (all of them if it set none)."""
        return self.backwards - (self.probed if self.probed >= 0 else 0)

    def step_counts(self) -> tuple[int | None, int | None]:
        """Backward calls at the last step and at the last ``zero_grad()`` it took (None: none)."""
        n0, zero_grads, steps = self.n_backward, self.zero_grads, self.steps
        return (n0 + steps if steps else None,
                n0 + zero_grads - 1 if zero_grads else None)
