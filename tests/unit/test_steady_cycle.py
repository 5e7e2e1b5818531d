"""The steady cycle (install/steady_cycle.py) changes what a step costs, never what is found: the
same loops, watched with the cycle on and off, give the same counters, measurements and report.
In-process, real torch. Gradient statistics are sampled at a fixed stride here (their stride
otherwise adapts to measured time, which differs between the two runs by design)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import gradwatch
from gradwatch import session as session_module
from gradwatch.monitors import step_order
from gradwatch.monitors.schedule import StepSchedule

_STEPS = 203  # (it ends inside a cycle: settled at the end, not at a checked step)


def _model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 4))
    return model, torch.randn(16, 8), torch.randint(0, 4, (16,))


def zero_backward_step(i, model, opt, x, y):
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def backward_step_zero(i, model, opt, x, y):
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    opt.zero_grad()


def never_zeroed(i, model, opt, x, y):
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def accumulating_four(i, model, opt, x, y):
    (nn.functional.cross_entropy(model(x), y) / 4).backward()
    if i % 4 == 3:
        opt.step()
        opt.zero_grad()


def zeroed_between_once(i, model, opt, x, y):
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    if i == 150:
        opt.zero_grad()  # the step finds no gradient, once
    opt.step()


def step_without_backward_once(i, model, opt, x, y):
    opt.zero_grad()
    if i != 130:
        nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def nan_from_120(i, model, opt, x, y):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    (loss * float("nan") if i >= 120 else loss).backward()
    opt.step()


def nan_from_70(i, model, opt, x, y):  # (found when the cycle stacks the losses at step 96)
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    (loss * float("nan") if i >= 70 else loss).backward()
    opt.step()


def eval_from_100(i, model, opt, x, y):
    if i == 100:
        model.eval()  # and never back to train()
    zero_backward_step(i, model, opt, x, y)


def dropout_off_by_its_flag_at_100(i, model, opt, x, y):
    if i == 100:  # (no eval() call: found by the eval-mode check of step 128, inside a cycle)
        model[2].training = False
    zero_backward_step(i, model, opt, x, y)


def lr_zero_from_90(i, model, opt, x, y):
    if i == 90:
        for group in opt.param_groups:
            group["lr"] = 0.0
    zero_backward_step(i, model, opt, x, y)


def layer_frozen_at_140(i, model, opt, x, y):
    if i == 140:
        model[0].weight.requires_grad_(False)
    zero_backward_step(i, model, opt, x, y)


def grad_set_to_none(i, model, opt, x, y):
    for p in model.parameters():
        p.grad = None
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def penalty_by_autograd_grad(i, model, opt, x, y):
    opt.zero_grad()
    xi = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(xi), y)
    (g,) = torch.autograd.grad(loss, xi, create_graph=True)
    (loss + g.square().mean()).backward()
    opt.step()


def scalar_then_vector_loss(i, model, opt, x, y):
    opt.zero_grad()
    out = nn.functional.cross_entropy(model(x), y, reduction="none")
    if i >= 170:
        out.backward(torch.ones_like(out))  # not a scalar: the full path
    else:
        out.mean().backward()
    opt.step()


def stops_zeroing_at_151(i, model, opt, x, y):
    if i < 151:  # (from here on gradients accumulate: found by the probe, at the same step)
        opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def stops_zeroing_after_a_probe_in_the_cycle(i, model, opt, x, y):
    if i < 152:  # (step 152: a multiple of 8, not of 16, probed inside the cycle)
        opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def a_loss_of_shape_one_at_170(i, model, opt, x, y):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    (loss.view(1) if i == 170 else loss).backward()  # (one element: backward() takes it, no loss is kept)
    opt.step()


def a_loss_of_shape_one_at_80(i, model, opt, x, y):
    # (the cycle's step 96 stacks 31 losses, not 32: the full path stacks at step 97, and the cycle ends at 96)
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    (loss.view(1) if i == 80 else loss).backward()
    opt.step()


def zeroed_in_place(i, model, opt, x, y):
    opt.zero_grad(set_to_none=False)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


_previous: dict[int, torch.Tensor] = {}


def backward_through_a_freed_graph_at_150(i, model, opt, x, y):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    if i == 150:  # (the cycle's backward raises: explained as the full path explains it)
        try:
            _previous[id(opt)].backward()
        except RuntimeError:
            pass
    loss.backward()
    _previous[id(opt)] = loss
    opt.step()


_compiled: dict[int, nn.Module] = {}


def compiled_model_from_100(i, model, opt, x, y):
    if i >= 100:  # compiled code runs from here on (dynamo's eager backend: no compiler needed)
        model = _compiled.setdefault(id(model), torch.compile(model, backend="eager"))
    zero_backward_step(i, model, opt, x, y)


LOOPS = [zero_backward_step, backward_step_zero, never_zeroed, accumulating_four, zeroed_between_once,
         step_without_backward_once, nan_from_120, nan_from_70, eval_from_100, dropout_off_by_its_flag_at_100,
         lr_zero_from_90, layer_frozen_at_140,
         grad_set_to_none, penalty_by_autograd_grad, scalar_then_vector_loss, compiled_model_from_100,
         stops_zeroing_at_151, stops_zeroing_after_a_probe_in_the_cycle, a_loss_of_shape_one_at_170,
         a_loss_of_shape_one_at_80, zeroed_in_place, backward_through_a_freed_graph_at_150]


def _monitor_state(session) -> tuple:
    """What the monitor's parts hold between steps (the cycle settled)."""
    order, stats = session._monitor.order, session._monitor.stats
    probes = sorted(key for key, st in order.opts.items() if st.probe is not None)
    return (session._monitor.n_backward, sorted(order.pending), probes, order.watching, order.checking,
            order.used, order.n_at_step, len(stats.pending),
            [(key, len(s.losses), len(s.chunks), len(s.rows)) for key, s in sorted(stats.series.items())])


def _watched(loop, steady: bool, two_optimizers: bool = False, **schedule_options) -> tuple:
    """What a watched run of ``loop`` leaves: counters, measurements and the report."""
    model, x, y = _model()
    # (stride: at once the largest)
    schedule = StepSchedule(steady_cycles=steady, stats_target=1e-12, **schedule_options)
    if two_optimizers:  # one optimizer per layer, stepping in turn
        first = torch.optim.SGD(model[0].parameters(), lr=0.05)
        last = torch.optim.Adam(model[3].parameters(), lr=1e-3)
        opts = [first, last]
    else:
        opts = [torch.optim.Adam(model.parameters(), lr=1e-3)]
    taken = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gradwatch.watch(warn=False, namespace={"model": model}, schedule=schedule) as report:
            session = session_module.current()
            for i in range(_STEPS):
                loop(i, model, opts[i % len(opts)], x, y)
                if session._steady is not None:
                    taken.append(i)
            session._settle_steady()
            state = _monitor_state(session)
    records = [(r.key, r.steps, r.checked_steps, r.steps_missing, r.calls_at_step_or_zero_grad,
                r.backwards_at_step, r.backwards_at_zero_grad) for r in session.optimizers.records()]
    backwards = [(event.index, event.steps_before) for event in session.events.backwards]
    result = (state, backwards, session.events.n_backward, session.events.n_steps, records,
              [repr(m) for m in session.events.measurements],
              [(d.code, d.message, repr(d.location)) for d in report.diagnostics])
    return result, taken


@pytest.mark.parametrize("loop", LOOPS, ids=[loop.__name__ for loop in LOOPS])
def test_the_steady_cycle_finds_what_the_full_path_finds(loop) -> None:
    with_cycle, armed = _watched(loop, steady=True)
    without, never = _watched(loop, steady=False)
    assert never == []
    assert with_cycle == without


# periods that are no multiples of each other: a cycle's sampled steps fall apart (probes every
# 3rd, missing-gradient checks every 5th, gradient norms every 4th), its ends every 12th
_SPARSE = {"probe_every": 3, "missing_check_every": 5, "eval_check_every": 12, "stats_max_stride": 4,
           "stats_adapt_every": 8, "stats_warm": 8, "probe_all": 4, "missing_check_all": 4}


@pytest.mark.parametrize("loop", [zero_backward_step, stops_zeroing_at_151, stops_zeroing_after_a_probe_in_the_cycle,
                                  layer_frozen_at_140, nan_from_120, eval_from_100],
                         ids=lambda loop: loop.__name__)
def test_a_sparse_schedule_finds_the_same_with_and_without_the_cycle(loop) -> None:
    with_cycle, armed = _watched(loop, steady=True, **_SPARSE)
    without, _ = _watched(loop, steady=False, **_SPARSE)
    assert len(armed) > 100
    assert with_cycle == without


def test_a_steady_loop_takes_most_steps_in_the_cycle() -> None:
    # (the equality above would hold trivially if the cycle were never armed)
    _, armed = _watched(zero_backward_step, steady=True)
    assert len(armed) > _STEPS * 3 // 4
    _, armed = _watched(backward_step_zero, steady=True)
    assert len(armed) > _STEPS * 3 // 4
    _, armed = _watched(never_zeroed, steady=True)
    assert armed == []  # no zero_grad() in the loop: the probe watches every step


def test_the_first_steps_sampled_one_by_one_are_taken_in_the_cycle() -> None:
    # from the 4th step on (the first three keep the positions of their calls), every step has
    # its gradient norms sampled, a probe left and a missing-gradient check until the 16th, and
    # norms sampled until the first stride decision, at step 32: the cycle takes them, with
    # that work done in its step hook
    _, armed = _watched(zero_backward_step, steady=True)
    assert [i for i in armed if i < 32] == list(range(2, 32))  # (armed after the 3rd step on; were from the 16th)


def test_two_optimizers_in_turn_find_the_same() -> None:
    with_cycle, _ = _watched(zero_backward_step, steady=True, two_optimizers=True)
    without, _ = _watched(zero_backward_step, steady=False, two_optimizers=True)
    assert with_cycle == without


def test_compiled_code_that_starts_to_run_settles_the_cycle() -> None:
    # (its steps are found from outside, by `CompiledSteps`, from counters the cycle must have
    # settled first)
    model, x, y = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    compiled = torch.compile(model, backend="eager")
    schedule = StepSchedule(stats_target=1e-12)  # (gradient norms every 32nd step, whatever the load)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gradwatch.watch(warn=False, namespace={}, schedule=schedule):
            session = session_module.current()
            for i in range(38):  # (steps 4-63 are one cycle: armed at step 3)
                zero_backward_step(i, model, opt, x, y)
            assert session._steady is not None and session._steady.steps == 35  # armed, and taken
            with torch.no_grad():
                compiled(x)
            assert session._steady is None
            assert session.events.n_steps == 38


def test_a_cycle_runs_across_its_sampled_work_up_to_its_bound(monkeypatch) -> None:
    # the probe (every step of the first 16, then every 8th), the missing-gradient check (every
    # 16th), the eval-mode check (every 64th), and at every 32nd step the losses stacked and the
    # stride of gradient norms decided (one loss per step: they fall on one step) are done inside
    # the cycle: it ends only at the next multiple of `cycle_steps` (the full path takes that one)
    armed_cycles = []

    class Counted(session_module.SteadyCycle):
        __slots__ = ()

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            armed_cycles.append((self.at, self.limit))

    monkeypatch.setattr(session_module, "SteadyCycle", Counted)
    _watched(zero_backward_step, steady=True)
    assert armed_cycles == [(3, 1020)]
    armed_cycles.clear()
    _watched(zero_backward_step, steady=True, cycle_steps=64)
    assert armed_cycles == [(3, 60), (64, 63), (128, 63), (192, 63)]


def test_a_fault_in_the_cycles_sampled_work_is_one_warning_and_no_step_lost(monkeypatch) -> None:
    # (a fault before the cycle counts its step sends the step down the full path, which counts
    # it; one after it, in the probe, leaves the step counted)
    next_probe = StepSchedule.next_probe
    raised = []

    def faulty(self, step):  # (asked at step 40, a probe's, for the probe after it)
        if step == 40 and not raised:  # (inside a cycle: steps 33-63)
            raised.append(step)
            raise RuntimeError("injected")
        return next_probe(self, step)

    monkeypatch.setattr(StepSchedule, "next_probe", faulty)
    monkeypatch.setattr(step_order.StepOrder, "probe_in_cycle", lambda *args: 1 / 0)
    model, x, y = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gradwatch.watch(warn=False, namespace={"model": model}) as report:
            session = session_module.current()
            for i in range(_STEPS):
                zero_backward_step(i, model, opt, x, y)
            session._settle_steady()
            n_steps, n_backward = session.events.n_steps, session.events.n_backward
    assert raised == [40]
    assert (n_steps, n_backward) == (_STEPS, _STEPS)
    assert [d.code for d in report.diagnostics] == ["GW900"]
