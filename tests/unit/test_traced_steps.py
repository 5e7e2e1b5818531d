"""While the first iterations are traced, step() and zero_grad() run without the tracing mode
(the optimizer's own ops are no forward ops: a traced iteration with 1,000 optimizers costs
1,000 plain steps, not 1,000 traced ones), except where the step runs the user's forward (a
closure). A traced backward's analysis runs with automatic garbage collection paused, and the
user's setting comes back. In-process, real torch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradwatch
from gradwatch import session as session_module


def _mode_on_stack() -> bool:
    watch = session_module.current()
    mode = watch.mode if watch is not None else None
    return mode is not None and any(torch._C._get_function_stack_at(i) is mode
                                    for i in range(torch._C._len_torch_function_stack()))


class RecordingSGD(torch.optim.SGD):
    """An SGD that notes whether the tracing mode was on while its step() and zero_grad() ran."""

    def __init__(self, *args, fail_at: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, bool]] = []
        self.fail_at, self.calls = fail_at, 0

    def step(self, closure=None):
        self.calls += 1
        if closure is not None:
            with torch.enable_grad():
                closure()
        self.seen.append(("step", _mode_on_stack()))
        if self.calls == self.fail_at:
            raise RuntimeError("step failed")
        return super().step()



def _loop(opt, model, closure: bool = False, steps: int = 2) -> list[bool]:
    """Whether the mode was on at each forward."""
    x, y = torch.randn(8, 4), torch.randn(8, 1)
    forwards = []
    for _ in range(steps):
        opt.zero_grad()
        if closure:
            def closure_fn():
                forwards.append(_mode_on_stack())
                loss = nn.functional.mse_loss(model(x), y)
                loss.backward()
                return loss
            opt.step(closure_fn)
        else:
            forwards.append(_mode_on_stack())
            nn.functional.mse_loss(model(x), y).backward()
            try:
                opt.step()
            except RuntimeError:
                pass
    return forwards


def test_a_traced_iterations_step_and_zero_grad_run_without_the_tracing_mode() -> None:
    model = nn.Linear(4, 1)
    opt = RecordingSGD(model.parameters(), lr=0.1, momentum=0.9, foreach=False)
    traced: list[str] = []
    with gradwatch.watch(warn=False, namespace={}, trace_steps=2):
        record = session_module.current().provenance.record

        def recording(func, *args, **kwargs):
            traced.append(getattr(func, "__name__", None) or str(func))
            return record(func, *args, **kwargs)
        session_module.current().provenance.record = recording
        x, y = torch.randn(8, 4), torch.randn(8, 1)
        forwards = []
        for _ in range(3):
            opt.zero_grad(set_to_none=False)  # (zero_() on each gradient, were it traced)
            forwards.append(_mode_on_stack())
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    assert forwards == [True, True, False]  # the forwards of the two traced iterations are traced
    assert [on for _, on in opt.seen] == [False, False, False]
    assert "linear" in traced and "mse_loss" in traced
    # SGD's own ops (momentum buffers, parameter updates) and the zeroing are not traced
    assert not {"zero_", "add_", "mul_", "clone", "_foreach_zero_"} & set(traced), traced
    # nor the profiler marks that step() puts around itself before its hooks run
    assert not [name for name in traced if "record_function" in name], traced


def test_a_step_with_a_closure_keeps_the_tracing_mode_for_the_users_forward() -> None:
    model = nn.Linear(4, 1)
    opt = RecordingSGD(model.parameters(), lr=0.1)
    with gradwatch.watch(warn=False, namespace={}, trace_steps=3):
        forwards = _loop(opt, model, closure=True, steps=2)
    assert forwards == [True, True]
    assert [on for kind, on in opt.seen if kind == "step"] == [True, True]


def test_after_a_step_that_raised_the_mode_comes_back_for_the_next_iteration() -> None:
    model = nn.Linear(4, 1)
    opt = RecordingSGD(model.parameters(), lr=0.1, fail_at=1)  # no post-step hook runs
    with gradwatch.watch(warn=False, namespace={}, trace_steps=2):
        forwards = _loop(opt, model, steps=2)
        depth = torch._C._len_torch_function_stack()
    assert forwards == [True, True]
    assert depth == 0  # (tracing ended after the second backward)
    assert torch._C._len_torch_function_stack() == 0


@pytest.mark.parametrize("differentiable", [False, True])
def test_a_differentiable_step_stays_traced(differentiable: bool) -> None:
    model = nn.Linear(4, 1)
    seen = []

    class Probe(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(_mode_on_stack())
            return super().step(closure)

    opt = Probe(model.parameters(), lr=0.1, differentiable=differentiable)
    with gradwatch.watch(warn=False, namespace={}, trace_steps=2):
        _loop(opt, model, steps=1)
    assert seen == [differentiable]


@pytest.mark.parametrize("fault", [False, True])
@pytest.mark.parametrize("collecting", [True, False])
def test_a_traced_backwards_analysis_pauses_the_collector_and_leaves_its_state(monkeypatch, collecting: bool,
                                                                                fault: bool) -> None:
    # the analysis runs with automatic collection paused (its records die young); the user's
    # setting comes back after it, also when the analysis fails (one internal warning)
    import gc
    import warnings

    from gradwatch.trace import flow

    analyze, seen = flow.FlowAnalyzer.analyze, []

    def recording(self, *args, **kwargs):
        seen.append(gc.isenabled())
        if fault:
            raise RuntimeError("injected")
        return analyze(self, *args, **kwargs)

    monkeypatch.setattr(flow.FlowAnalyzer, "analyze", recording)
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    was = gc.isenabled()
    (gc.enable if collecting else gc.disable)()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with gradwatch.watch(warn=False, namespace={}) as report:
                for _ in range(3):
                    opt.zero_grad()
                    model(torch.ones(1, 4)).sum().backward()
                    opt.step()
                    assert gc.isenabled() is collecting
        assert seen == [False, False]  # (the two traced backward calls)
        assert [d.code for d in report.diagnostics] == (["GW900"] if fault else [])
    finally:
        (gc.enable if was else gc.disable)()
