"""What a watched training step costs in the steady state, counted instead of timed: the Python
calls gradwatch adds to a plain step (a step of the benchmark's MLP is ~1,700 Python-level calls
of torch's own; every call gradwatch adds is ~0.05% of it). In-process, real torch."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import sys

import pytest
import torch
from torch import nn

import gradwatch
from gradwatch.monitors.schedule import StepSchedule


def _calls_per_step(context, steps: int = 40) -> collections.Counter:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))

    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    calls: collections.Counter = collections.Counter()

    def count(frame, event, arg):
        if event == "call":
            code = frame.f_code
            calls[f"{code.co_filename.rsplit('/', 1)[-1]}:{code.co_name}"] += 1

    with context():
        for _ in range(100):  # past the traced iterations and the dense first checks
            step()
        sys.setprofile(count)
        try:
            for _ in range(steps):
                step()
        finally:
            sys.setprofile(None)
    return collections.Counter({k: v / steps for k, v in calls.items()})


# gradwatch's wrapper of dynamo's `_maybe_set_eval_frame`, called as often as torch's own
# `disable` wrappers call it: twice per step, four times once dynamo has run in the process
_MIRRORED = "compiled.py:set_eval_frame"


def _added(mode) -> tuple[float, str]:
    """Python calls a steady step adds (not counting `_MIRRORED`), and their listing."""
    plain = _calls_per_step(contextlib.nullcontext)
    watched = _calls_per_step(mode)
    added = {k: watched[k] - plain.get(k, 0) for k in watched if watched[k] - plain.get(k, 0) > 0.01}
    listing = ", ".join(f"{k} {v:g}" for k, v in sorted(added.items(), key=lambda kv: -kv[1]))
    return sum(watched.values()) - sum(plain.values()) - watched[_MIRRORED], listing


@pytest.mark.slow  # a profiled loop (~5 s each): the full run and CI
def test_the_session_adds_few_python_calls_to_a_step() -> None:
    added, listing = _added(lambda: gradwatch.watch(warn=False, namespace={}, per_step_monitors=False))
    # zero_grad, backward (its nested autograd.backward passes through) and the step hook, each
    # behind the patch's guard: 11.8 today (63 of 64 steps take the steady cycle)
    assert added <= 12.0, listing


@pytest.mark.slow
def test_the_training_monitor_adds_few_more() -> None:
    # the gradient-norm stride adapts to measured time: pinned at its widest (32) for a count
    # that does not depend on the machine's load
    pinned = StepSchedule(stats_target=1e-9)
    added, listing = _added(lambda: gradwatch.watch(warn=False, namespace={}, schedule=pinned))
    # + the monitor's part of the steps the steady cycle does not take, and of the sampled work
    # it does (a probe every 8th step, a missing-gradient check every 16th, the losses stacked
    # every 32nd): 15.8 today
    assert added <= 16.0, listing


@pytest.mark.slow
def test_the_steady_cycle_takes_the_monitors_hooks_off_most_steps() -> None:
    pinned = StepSchedule(stats_target=1e-9)
    cycling, _ = _added(lambda: gradwatch.watch(warn=False, namespace={}, schedule=pinned))
    full, listing = _added(lambda: gradwatch.watch(
        warn=False, namespace={}, schedule=dataclasses.replace(pinned, steady_cycles=False)))
    # (the monitor's zero_grad 2, backward 2 and step 3 calls on every step, without it: 22 today)
    assert full - cycling >= 5, listing
