"""On which steps each part of a watch session looks: one schedule instead of a policy per part.

A long training loop is watched cheaply because most checks run on a sample of steps: the first
``backward()`` calls are traced in full (provenance), each optimizer's first steps and then every
so many are checked for parameters without a gradient (GW006), probed for a gradient that nobody
cleared (GW101) and checked for modules in eval mode (GW115), and gradient norms are sampled at a
stride that adapts to what they cost (GW105-GW108). All of these decisions are taken here, from
one `StepSchedule` per session, so that a test (or a user who wants denser sampling) changes them
in one place. Step numbers count from 1, per optimizer.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class StepSchedule:
    trace_backward_calls: int = 2  # the first backward() calls, traced in full
    retrace_limit: int = 16  # backward() calls traced at most to reach one optimizer's next step
    keep_positions: int = 3  # first calls whose code positions are kept (for related locations)
    missing_check_all: int = 16  # every one of an optimizer's first steps is checked for
    missing_check_every: int = 16  # ... parameters without a gradient, then every so many
    probe_all: int = 16  # the uncleared-gradient probe: on every one of the first steps,
    probe_every: int = 8  # ... then every so many
    eval_check_every: int = 64  # eval-mode and zero-learning-rate checks: step 1, then every so many
    stats_warm: int = 32  # gradient norms of every one of the first steps (short loops: all of them)
    stats_max_stride: int = 32  # ... then of every stride-th step, the stride at most this
    stats_target: float = 0.002  # statistics time / loop time that the stride aims at
    stats_adapt_every: int = 32  # steps between stride decisions
    # optimizers whose step gets the sampled checks above (missing gradients, probe, gradient
    # norms), per backward() call: with more optimizers stepping in one iteration (1,000 small
    # ones), each one's step is checked in one iteration out of every ceil(n / this), in turn
    checked_per_backward: int = 64
    # the steps between those checks take the steady cycle (install/steady_cycle.py): they only
    # count, at a fraction of a full step hook's cost; off, every step takes the full path
    steady_cycles: bool = True
    cycle_steps: int = 1024  # ... a cycle ends at the next multiple of this at the latest

    @functools.cached_property
    def quiet_after(self) -> int:
        """Steps after this one are quiet (see `busy_every`) unless a multiple of `busy_every`."""
        return max(self.missing_check_all, self.probe_all, self.keep_positions, 1)

    @functools.cached_property
    def busy_every(self) -> int:
        """A step past `quiet_after` that is no multiple of this is checked by nothing above
        (no missing-gradient check, probe, eval check or kept position): the per-step hooks
        test ``step > quiet_after and step % busy_every`` inline and skip the calls."""
        return math.gcd(self.missing_check_every, self.probe_every, self.eval_check_every)

    @functools.cached_property
    def cycle_after(self) -> int:
        """A steady cycle may take the steps after this one: the first ones keep the positions
        of their calls (related locations), and the first is checked for eval mode."""
        return max(self.keep_positions, 1)

    @functools.cached_property
    def cycle_every(self) -> int:
        """A steady cycle (install/steady_cycle.py) takes the probes, the missing-gradient and
        eval-mode checks and the samples of gradient norms of its steps itself: it runs up to
        the next multiple of this (the full path takes that step and arms the next cycle)."""
        return max(self.cycle_steps, 1)

    def thinned(self, optimizers: int, key: int, backward_calls: int) -> bool:
        """With ``optimizers`` stepping per iteration: whether optimizer ``key``'s step after
        ``backward_calls`` backward() calls is left out of the sampled checks. Up to
        `checked_per_backward` optimizers, none is; with more, they take turns: each one's step
        is checked in one iteration out of every ceil(optimizers / checked_per_backward)."""
        thinning = -(-optimizers // max(self.checked_per_backward, 1))
        return thinning > 1 and (key + backward_calls) % thinning != 0

    def checks_missing(self, step: int, backwards_since_step: int) -> bool:
        """Whether this step is checked for parameters without a gradient (always when no
        backward() ran since the optimizer's last step: that step has nothing to go on)."""
        return (step <= self.missing_check_all or step % self.missing_check_every == 0
                or backwards_since_step == 0)

    def probes(self, step: int) -> bool:
        """Whether this step leaves a probe on one of its gradients."""
        return step <= self.probe_all or step % self.probe_every == 0

    def next_probe(self, step: int) -> int:
        """The first step after ``step`` that `probes`."""
        return step + 1 if step < self.probe_all else next_multiple(step, self.probe_every)

    def next_missing_check(self, step: int) -> int:
        """The first step after ``step`` that `checks_missing` (with a backward() since the
        last step)."""
        return step + 1 if step < self.missing_check_all else next_multiple(step, self.missing_check_every)

    def checks_eval(self, step: int) -> bool:
        return step == 1 or step % self.eval_check_every == 0

    def next_eval_check(self, step: int) -> int:
        """The first step after ``step`` that `checks_eval`."""
        return 1 if step < 1 else next_multiple(step, self.eval_check_every)

    def keeps_position(self, seen: int) -> bool:
        """Whether the position of a call is kept, ``seen`` such calls having been kept before."""
        return seen < self.keep_positions

    def adapts_stride(self, step: int) -> bool:
        return step >= self.stats_warm and step % self.stats_adapt_every == 0

    def next_stride_decision(self, step: int) -> int:
        """The first step after ``step`` at which `adapts_stride` is true."""
        every = max(self.stats_adapt_every, 1)
        return -(-max(self.stats_warm, step + 1) // every) * every

    def stride(self, current: int, seconds_per_sample: float, seconds_per_step: float) -> int:
        """The stride that keeps the statistics near `stats_target` of the loop's own time: a
        power of two (sampled steps stay aligned), raised at once, lowered only by a factor of
        four or more (timing noise does not make it flap)."""
        want = min(self.stats_max_stride,
                   max(1, math.ceil(seconds_per_sample / (self.stats_target * max(seconds_per_step, 1e-12)))))
        want = 1 << (want - 1).bit_length()
        return want if want > current or 2 * want < current else current


def next_multiple(step: int, every: int) -> int:
    """The first multiple of ``every`` after ``step``."""
    return (step // every + 1) * every
