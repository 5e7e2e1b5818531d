"""The training-dynamics monitor (GW101-GW115) in plain Python: bounded state, sampling, traces
requested after a NaN, cleanup, and the rules' interplay on recorded findings."""

from __future__ import annotations

import gc
import importlib.util
import math
import warnings
import weakref
from pathlib import Path

import pytest
import torch
from torch import nn

import gradwatch
from watching import watched
from gradwatch import session as session_mod
from gradwatch.events import Events
from gradwatch.measurements import (ClearedUnusedGradients, GradientStatistics, LearningRateZero, LossStatistics,
                                    NonFiniteOrigin, OptimizerRef)
from gradwatch.rules import gw106_exploding_gradient as gw106
from gradwatch.rules import gw108_dead_parameter as gw108
from gradwatch.rules import gw113_diverging_loss as gw113
from gradwatch.rules import registry
from gradwatch.monitors import grad_stats
from gradwatch.monitors.schedule import StepSchedule

ROOT = Path(__file__).resolve().parents[2]


def monitor():
    return session_mod.current()._monitor


def loop(model, opt, x, y, steps, check=None):
    for i in range(steps):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        if check is not None:
            check(i)


def test_state_does_not_grow_with_steps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    seen = {}

    def check(i):
        if i + 1 in (1500, 3000):
            m = monitor()
            s = m.stats.series[1]
            seen[i + 1] = (len(s.rows), len(s.losses), len(m.stats.pending), len(m.ops.records),
                           sorted((k, tuple(v.shape)) for k, v in s.acc.items()),
                           sorted((k, tuple(v.shape)) for k, v in s.lacc.items()))

    watched(lambda: loop(model, opt, x, y, 3000, check))
    rows, losses, pending, records, acc, lacc = seen[3000]
    assert rows < grad_stats._BLOCK and losses < grad_stats._CHUNK and pending <= 1
    assert records <= 4  # traced iterations only
    assert acc == seen[1500][4] and lacc == seen[1500][5]  # fixed shapes: 4 parameter tensors
    assert ("first_bad", (4,)) in acc and ("tail", (16,)) in lacc


def test_a_nan_among_the_first_rows_asks_for_a_trace_before_they_are_reduced():
    # the first sampled rows are reduced with the block they start, at its end or at the end of
    # the cell, but whether they hold a NaN is posted once there are `_FIRST_BLOCK` of them
    w = nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.0)
    seen = {}

    def train():
        for i in range(grad_stats._FIRST_BLOCK + 2):
            opt.zero_grad()
            loss = torch.sqrt(w * 0.0).sum()  # a finite loss, a NaN gradient (0 * inf)
            loss.backward()
            opt.step()
            stats = monitor().stats
            seen[i + 1] = (stats.traced_after_nonfinite, len(stats.series[1].rows), bool(stats.series[1].acc))

    report = watched(train)
    first = grad_stats._FIRST_BLOCK
    assert seen[first - 1] == (False, first - 1, False)
    assert seen[first] == (True, first, False)  # asked for a trace; the rows not reduced yet
    assert "GW105" in [d.code for d in report.diagnostics]


def test_stride_adapts_and_dead_parameters_are_still_found():
    expensive = StepSchedule(stats_target=1e-9)  # statistics "too expensive": widest stride
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    x, y = torch.randn(32, 8), torch.randn(32, 1)
    strides = []
    report = watched(lambda: loop(model, opt, x, y, 1500,
                                  lambda i: i == 1499 and strides.append(monitor().stats.series[1].stride)),
                     schedule=expensive)
    assert strides == [expensive.stats_max_stride] == [32]
    [dead] = [d for d in report if d.code == "GW108"]
    # fc1.weight, fc1.bias, fc2.weight (named after the optimizer: the model is no global here)
    assert dead.evidence["parameters"] == [f"optimizer#1.param_groups[0]['params'][{i}]" for i in range(3)]
    assert dead.evidence["zero_steps"] >= 1000


def _nan_from_a_log(steps: int, first_bad: int):
    """GW105 of a ``steps``-iteration loop whose ``torch.log(x)`` makes NaN from iteration
    ``first_bad + 1`` on (the user's own guard skips those steps: the parameters stay finite)."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    good, y = torch.rand(16, 3) + 0.5, torch.randn(16, 1)
    bad = good.clone()
    bad[2, 1] = -1.0  # log(-1) = NaN

    def run():
        for i in range(steps):
            opt.zero_grad()
            x = good if i < first_bad else bad
            features = torch.log(x)
            loss = nn.functional.mse_loss(model(features), y)
            loss.backward()
            if torch.isfinite(loss):
                opt.step()

    [d] = [d for d in watched(run) if d.code == "GW105"]
    return d


def test_nan_seen_later_requests_a_trace_that_names_the_op():
    d = _nan_from_a_log(400, 150)
    assert d.location.text == "torch.log(x)"
    assert d.evidence["loss_step"] == 151 and d.evidence["op"] == "log"


def test_a_nan_loss_is_seen_in_its_chunk_of_32_losses_and_traced_in_time():
    # a loop too short for a block of gradient norms or of `_LOSS_BLOCK` losses after its first NaN: the
    # chunk of 32 losses that holds it (its largest magnitude is NaN) asks for the trace that
    # names the op
    d = _nan_from_a_log(120, 40)
    assert d.location.text == "torch.log(x)" and d.evidence["op"] == "log"
    assert d.evidence["loss_step"] == 41


def test_gradwatch_keeps_no_user_object_after_the_cell():
    model = nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters())
    x, y = torch.randn(4, 3), torch.randn(4, 1)
    watched(lambda: loop(model, opt, x, y, 20))  # noqa: F821 (runs before the del below)
    refs = [weakref.ref(model), weakref.ref(opt), weakref.ref(model.weight)]
    del model, opt
    gc.collect()
    assert all(r() is None for r in refs)


def test_patches_are_restored():
    from torch.amp import GradScaler

    before = (GradScaler.scale, GradScaler.step, nn.Module.train)
    watched(lambda: None)
    assert (GradScaler.scale, GradScaler.step, nn.Module.train) == before


def test_user_results_are_unchanged():
    def train():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 1))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        x, y = torch.randn(16, 4), torch.randn(16, 1)
        loop(model, opt, x, y, 100)
        return [p.detach().clone() for p in model.parameters()]

    plain = train()
    out = []
    watched(lambda: out.append(train()))
    assert all(torch.equal(a, b) for a, b in zip(plain, out[0], strict=True))


# --- rules on recorded measurements -----------------------------------------------------------
OPT = OptimizerRef(key=1, name="opt", location=None, steps=100)


def run_rules(measurements):
    events = Events()
    events.measurements = list(measurements)
    return registry.run(events)


def gradient_statistics(**changes) -> GradientStatistics:
    """One optimizer's gradient statistics: three 8x8 weight matrices that learn normally over
    64 sampled steps, with ``changes`` applied."""
    n = len(changes.get("params", ["w1", "w2", "w3"]))
    values = dict(optimizer=OPT, loss=None, params=["w1", "w2", "w3"], numels=[64] * n, ndims=[2] * n,
                  sampled_steps=64, last_sampled_step=64, first_nonfinite_step=[math.inf] * n,
                  zero_run=[0.0] * n, last_nonzero_step=[64.0] * n, ever_nonzero=[True] * n,
                  sum_log10=[-64.0] * n, n_log10=[64.0] * n, n_present=[64.0] * n, all_zero_rows=0.0,
                  first_mean=[1.0] * n, first_global=1.0, last_mean=[1.0] * n, last_global=1.0)
    values.update(changes)
    return GradientStatistics(**values)


def loss_statistics(**changes) -> LossStatistics:
    values = dict(optimizer=OPT, loss=None, count=100, first_nonfinite=None, first_mean=1.0, tail=[0.5] * 16,
                  finite_count=100.0, finite_sum=60.0, finite_min=0.4, finite_max=1.2)
    values.update(changes)
    return LossStatistics(**values)


def test_flat_loss_is_not_reported_when_the_learning_rate_is_zero():
    flat = loss_statistics(tail=[1.0] * 16, finite_sum=100.0, finite_min=1.0, finite_max=1.0)
    assert [d.code for d in run_rules([gradient_statistics(), flat])] == ["GW112"]
    diags = run_rules([LearningRateZero(OPT, step=None, at_last_check=True, params=["w"]),
                       gradient_statistics(), flat])
    assert [d.code for d in diags] == ["GW114"]
    assert diags[0].message == "`opt` has learning rate 0, so `opt.step()` changes no parameter"
    assert diags[0].help == "The model does not learn: set a positive `lr`."
    # a warm-up schedule that starts at 0 and rises is fine
    assert run_rules([LearningRateZero(OPT, step=None, at_last_check=False, params=["w"])]) == []


def test_zero_gradients_left_by_zero_grad_before_step_are_gw102s():
    zeros = gradient_statistics(all_zero_rows=64.0, ever_nonzero=[False] * 3, zero_run=[64.0] * 3)
    assert [d.code for d in run_rules([zeros])] == ["GW114"]
    cleared = ClearedUnusedGradients(OPT, then="step", zero_grad=None, backward=None, step=None,
                                     backwards_cleared=1, times=0)
    assert [d.code for d in run_rules([cleared, zeros])] == ["GW102"]


def test_non_finite_message_names_step_parameters_and_origin():
    from gradwatch.diagnostics import Location

    op = Location(3, 16, 3, 30, "    features = torch.log(raw)", cell=5)
    bwd = Location(5, 5, 5, 20, "    loss.backward()", cell=5)
    grads = gradient_statistics(loss=bwd, params=["model.weight"], first_nonfinite_step=[1.0])
    losses = loss_statistics(loss=bwd, first_nonfinite=0.0)
    diags = run_rules([grads, losses, NonFiniteOrigin(op="log", location=op, inputs=[], iteration=1)])
    [d] = diags
    assert d.location == op and d.evidence["step"] == 1
    assert d.message == "`loss` first became NaN/Inf at step 1, from `torch.log(raw)`"
    assert d.help is not None and d.help.startswith("The first non-finite value came from `torch.log(raw)`. Guard")


@pytest.mark.parametrize(("growth", "reported"), [(gw106.MIN_GROWTH * 0.99, False), (gw106.MIN_GROWTH, True)])
def test_exploding_gradient_threshold_is_the_rule_modules(growth, reported):
    grads = gradient_statistics(last_global=growth, last_mean=[growth, 1.0, 1.0])
    diags = run_rules([grads])
    assert [d.code for d in diags] == (["GW106"] if reported else [])
    if reported:
        assert diags[0].evidence["parameters"] == ["w1"]  # grew 100x; the others did not


@pytest.mark.parametrize(("last", "reported"), [(9.9, False), (10.0, True)])
def test_diverging_loss_threshold_is_the_rule_modules(last, reported):
    assert gw113.MIN_GROWTH == 10
    diags = run_rules([loss_statistics(tail=[last] * 16, finite_max=last)])
    assert [d.code for d in diags] == (["GW113"] if reported else [])


def test_vanishing_gradient_is_measured_against_the_upper_quartile_layer():
    # log10 RMS per element, input side first: w1 -5 (4 orders below), w2 -1, w3 -1, w4 -3; upper
    # quartile: -1
    def vanishing(log_rms: list[float]):
        grads = gradient_statistics(params=["w1", "w2", "w3", "w4"], numels=[64] * 4, ndims=[2] * 4,
                                    n_log10=[10.0] * 4,
                                    sum_log10=[10 * (v + 0.5 * math.log10(64)) for v in log_rms])
        return run_rules([grads])

    [d] = vanishing([-5.0, -1.0, -1.0, -3.0])
    assert d.code == "GW107" and d.evidence["parameters"] == ["w1"] and d.evidence["orders"] == 4.0
    # the same small gradient behind a healthy layer is that matrix's own (a fresh attention's query)
    assert vanishing([-1.0, -5.0, -1.0, -3.0]) == []


def test_dead_parameters_need_the_rule_modules_run_of_zero_steps():
    def dead_for(run: float):
        return gradient_statistics(zero_run=[run, 0.0, 0.0], last_nonzero_step=[64 - run, 64.0, 64.0])

    assert run_rules([dead_for(gw108.MIN_ZERO_STEPS - 1)]) == []
    assert [d.code for d in run_rules([dead_for(gw108.MIN_ZERO_STEPS + 12)])] == ["GW108"]


def check_no_sync(*args, **kwargs) -> str:
    """``benchmarks/overhead.py``'s ``check_no_sync`` (the benchmark's GPU sync check)."""
    spec = importlib.util.spec_from_file_location("overhead", ROOT / "benchmarks" / "overhead.py")
    overhead = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(overhead)
    return overhead.check_no_sync(*args, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU lent: the sync check runs in "
                    "benchmarks/overhead.py on a GPU machine")
def test_no_host_device_sync_per_step_on_gpu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)).cuda()
    opt = torch.optim.Adam(model.parameters())
    x, y = torch.randn(32, 64, device="cuda"), torch.randn(32, 1, device="cuda")
    result = check_no_sync(lambda: loop(model, opt, x, y, 1), steps=300)
    assert result.startswith("ok"), result


def test_the_sync_check_fails_when_a_per_step_hook_faults(monkeypatch):
    """On the CPU, with stand-ins for the sync-debug mode: a per-step hook that raises what CUDA's
    sync-debug mode raises ends as a GW900 while the loop finishes normally; the check must fail."""
    torch.manual_seed(0)
    model, x, y = nn.Linear(4, 1), torch.randn(8, 4), torch.randn(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    mode = ["default"]
    stand_ins = dict(set_sync_debug_mode=lambda m: mode.__setitem__(0, m), synchronize=lambda: None)
    steps_run = []

    def step():
        loop(model, opt, x, y, 1)
        steps_run.append(mode[0])

    assert check_no_sync(step, steps=40, **stand_ins) == "ok: 0 syncs in 40 steps"
    assert steps_run.count("error") == 40 and mode == ["default"]

    sample = grad_stats.GradStats._sample  # (every step of the first 32 samples: in the steady cycle, too)

    def syncing_sample(self, *args, **kwargs):
        if mode[0] == "error":
            raise RuntimeError("called a synchronizing CUDA operation")
        return sample(self, *args, **kwargs)

    monkeypatch.setattr(grad_stats.GradStats, "_sample", syncing_sample)
    steps_run.clear()
    result = check_no_sync(step, steps=40, **stand_ins)
    assert steps_run.count("error") == 40 and mode == ["default"]  # the loop itself finished
    assert result.startswith("FAILED: GW900") and "called a synchronizing CUDA operation" in result, result

    def syncing_step():  # a sync in the training loop itself raises out of it
        step()
        if mode[0] == "error":
            raise RuntimeError("called a synchronizing CUDA operation")

    monkeypatch.undo()
    assert check_no_sync(syncing_step, steps=40, **stand_ins) == "FAILED: called a synchronizing CUDA operation"
    assert mode == ["default"]


def test_long_loops_are_checked_for_missing_gradients_on_a_sample_of_steps():
    torch.manual_seed(0)
    used, unused = nn.Linear(3, 1), nn.Linear(3, 1)
    opt = torch.optim.SGD([*used.parameters(), *unused.parameters()], lr=1e-2)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    report = watched(lambda: loop(used, opt, x, y, 100))
    [d] = [d for d in report if d.code == "GW006"]
    # every one of the first 16 steps, then every 16th: 16 + 5 of 100
    assert (d.evidence["steps"], d.evidence["steps_checked"], d.evidence["steps_without_gradient"]) == (100, 21, 21)
    assert d.message.endswith("(in 21 of the 21 steps checked, out of 100)")
    short = watched(lambda: loop(used, opt, x, y, 5))
    [d] = [d for d in short if d.code == "GW006"]
    assert d.message.endswith("(in 5 of 5 steps)")


def test_step_numbers_of_a_block_are_rebuilt_on_the_device_from_runs_of_one_stride():
    for steps in ([7], [1, 2, 3], [1, 2, 3, 5, 7, 9, 25, 41], [32, 48, 64, 96, 128], [1, 3]):
        assert grad_stats._steps_tensor(steps, torch.device("cpu")).tolist() == steps


def test_zero_grad_between_accumulated_micro_batches_is_gw102_at_the_zero_grad():
    from gradwatch.diagnostics import Location

    zero_grad = Location(6, 5, 6, 20, "    opt.zero_grad()", cell=2)
    backward = Location(8, 5, 8, 20, "    loss.backward()", cell=2)
    accumulating = OptimizerRef(key=1, name="opt", location=None, steps=3)  # 12 micro-batches, 4 per step
    cleared = ClearedUnusedGradients(accumulating, then="backward", zero_grad=zero_grad, backward=backward,
                                     step=None, backwards_cleared=1, times=9)
    [d] = run_rules([cleared])
    assert (d.code, d.location, d.severity.value) == ("GW102", zero_grad, "warning")
    assert d.message == ("`opt.zero_grad()` clears the gradients of `loss.backward()` before "
                         "`opt.step()` uses them (9 times)")
    assert d.help is not None and d.help.startswith("Only the last micro-batch before each step counts")
    # an optimizer that never steps between the backward() calls: step() is what is missing
    never = OptimizerRef(key=1, name="opt", location=None, steps=1)
    [d] = run_rules([ClearedUnusedGradients(never, then="backward", zero_grad=zero_grad, backward=backward,
                                            step=None, backwards_cleared=1, times=11)])
    assert (d.code, d.location) == ("GW104", backward)


# --- a Watch used again; many optimizers --------------------------------------------------------
def test_a_watch_used_twice_reports_each_use_once():
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    session = gradwatch.watch(warn=False, namespace={})
    codes = []
    for never_step in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with session as report:
                model = nn.Linear(3, 1)
                opt = torch.optim.SGD(model.parameters(), lr=1e-2)
                for _ in range(5):
                    opt.zero_grad()
                    nn.functional.mse_loss(model(x), y).backward()
                    if not never_step:
                        opt.step()
        codes.append([d.code for d in report])
    # one finding for an optimizer never stepped (not a second one for what zero_grad() cleared),
    # and nothing of the first use in the second's report
    assert codes == [["GW104"], []]


@pytest.mark.parametrize("per_tensor_loop", [False, True])
def test_many_optimizers_of_one_tensor_each_are_quiet(per_tensor_loop):
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(4)) for _ in range(40)]

    def train():
        opts = [torch.optim.SGD([p], lr=1e-2) for p in params]
        for _ in range(3):
            if per_tensor_loop:
                for p, o in zip(params, opts, strict=True):
                    o.zero_grad()
                    p.square().sum().backward()
                    o.step()
                continue
            for o in opts:
                o.zero_grad()
            torch.stack(params).square().sum().backward()
            for o in opts:
                o.step()

    assert [d.code for d in watched(train)] == []


# --- optimizer.step(closure): the forward and backward run inside step() ------------------------
def closure_loop(kind: str, softmax_before_loss: bool = False, clear=None):
    """A training loop whose forward, loss and backward run in ``step(closure)``: LBFGS, or
    Lightning's manual shape (``step(closure=...)``); ``clear`` empties the gradients between
    the steps as ``model.zero_grad()`` does (not through the optimizer)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    opt = torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=4) if kind == "lbfgs" \
        else torch.optim.SGD(model.parameters(), lr=0.1)

    def closure():
        if clear is None:
            opt.zero_grad()
        logits = model(x)
        if softmax_before_loss:
            logits = logits.softmax(dim=1)
        loss = nn.functional.cross_entropy(logits, y)
        loss.backward()
        return loss

    def train():
        for _ in range(12):
            if clear is not None:
                clear(model)
            if kind == "lbfgs":
                opt.step(closure)
            else:
                opt.step(closure=closure)
    return train


@pytest.mark.parametrize("kind", ["lbfgs", "manual"])
@pytest.mark.parametrize("clear", [None, nn.Module.zero_grad], ids=["zero_grad_in_closure", "model_zero_grad"])
def test_a_clean_closure_loop_is_quiet(kind, clear):
    # the gradients are checked after the closure computed them, not before step() runs it
    assert [(d.code, d.message) for d in watched(closure_loop(kind, clear=clear))] == []


@pytest.mark.parametrize("kind", ["lbfgs", "manual"])
def test_ops_inside_a_closure_are_observed(kind):
    [d] = watched(closure_loop(kind, softmax_before_loss=True))
    assert d.code == "GW109" and d.location.text == "logits.softmax(dim=1)"


def test_a_closure_keeps_its_result_and_its_exception():
    w = nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([w], lr=0.1)
    results = []

    def train():
        def closure():
            opt.zero_grad()
            loss = (w * 2).sum()
            loss.backward()
            return loss
        results.append(opt.step(closure).item())

        def failing():
            raise KeyError("from the closure")
        with pytest.raises(KeyError, match="from the closure"):
            opt.step(failing)

    watched(train)
    assert results == [4.0]


def _gw105(grad_bad: float, last_finite: float, **loss):
    stats = [gradient_statistics(sampled_steps=2000, last_sampled_step=2000, first_nonfinite_step=[grad_bad] * 3,
                                 last_finite_step=last_finite),
             loss_statistics(count=2000, first_nonfinite=1500.0, **loss)]
    [d] = [d for d in run_rules(stats) if d.code == "GW105"]
    return d


def test_gw105_a_loss_that_is_nan_before_any_gradient_was_made_in_the_forward():
    d = _gw105(grad_bad=1501.0, last_finite=1500.0)
    assert d.message == "the loss was already NaN/Inf in the forward pass of the 1,501st `backward()` call"
    assert d.help is not None and d.help.startswith("Every gradient before it was finite: an input of that step")
    assert d.evidence["loss_step"] == 1501 and d.evidence["step"] == 1501
    unsure = _gw105(grad_bad=1504.0, last_finite=1472.0)  # the step before was not sampled
    assert "when last checked, at the 1,472nd `step()`" in (unsure.help or "")
    assert "or the `backward()` of the step before made a NaN/Inf gradient" in (unsure.help or "")


def test_gw105_a_gradient_nan_first_or_an_overflow_keeps_the_step_wording():
    assert _gw105(grad_bad=1500.0, last_finite=1499.0).message.startswith(
        "the gradient of `w1`, `w2`, `w3` first became NaN/Inf at step 1500")
    grown = _gw105(grad_bad=1501.0, last_finite=1500.0, finite_max=3e9)  # the values overflowed
    assert grown.message.startswith("the loss first became NaN/Inf at step 1501") and "forward" not in grown.message


def _sampling_of_each_part(schedule: StepSchedule | None, monkeypatch) -> dict[str, int]:
    """What every sampled part did in a 20-step loop with an unused parameter."""
    from gradwatch.monitors import step_order

    eval_checks: list[int] = []
    check_eval = step_order.StepOrder._check_eval
    monkeypatch.setattr(step_order.StepOrder, "_check_eval",
                        lambda self, opt, key, st: eval_checks.append(key) or check_eval(self, opt, key, st))
    torch.manual_seed(0)
    used, unused = nn.Linear(3, 1), nn.Linear(3, 1)
    opt = torch.optim.SGD([*used.parameters(), *unused.parameters()], lr=1e-2)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    seen = {"probed steps": 0}

    def check(i):
        m = monitor()
        seen["probed steps"] += m.order.opts[1].probe is not None
        if i == 19:
            s = m.stats.series[1]
            seen["norm rows"] = s.n_rows + len(s.rows)
            seen["kept backward positions"] = len(m.order.backward_positions)

    def count_traced(i):  # (in a loop without a missing gradient: no trace again to find its cause)
        if i == 19:
            seen["traced backward calls"] = len(session_mod.current().events.backwards)

    options = {"schedule": schedule} if schedule else {}
    report = watched(lambda: loop(used, opt, x, y, 20, check), **options)
    [missing] = [d for d in report if d.code == "GW006"]
    seen["eval checks"] = len(eval_checks)
    watched(lambda: loop(used, torch.optim.SGD(used.parameters(), lr=1e-2), x, y, 20, count_traced), **options)
    monkeypatch.undo()
    return {**seen, "missing-gradient checks": missing.evidence["steps_checked"]}


def test_one_schedule_decides_the_sampling_of_every_part(monkeypatch):
    # (both schedules without steady cycles: a cycle keeps the probe of the step that armed it,
    # or of a step it probed, until it settles, with nothing to find; the counts here are per step)
    assert _sampling_of_each_part(StepSchedule(steady_cycles=False), monkeypatch) == {
        "probed steps": 16, "norm rows": 20, "kept backward positions": 3, "traced backward calls": 2,
        "eval checks": 1, "missing-gradient checks": 16}
    sparse = StepSchedule(trace_backward_calls=5, keep_positions=1, missing_check_all=2, missing_check_every=5,
                          probe_all=2, probe_every=3, eval_check_every=4, stats_warm=4, stats_adapt_every=4,
                          stats_max_stride=4, stats_target=1e-9, steady_cycles=False)
    assert _sampling_of_each_part(sparse, monkeypatch) == {
        "probed steps": 8,  # steps 1, 2, 3, 6, 9, 12, 15, 18
        "norm rows": 8,  # 1, 2, 3, 4 (warm), then at stride 4: 8, 12, 16, 20
        "kept backward positions": 1, "traced backward calls": 5,
        "eval checks": 6,  # 1, 4, 8, 12, 16, 20
        "missing-gradient checks": 6}  # 1, 2, 5, 10, 15, 20


def test_a_backward_looks_only_at_the_optimizers_with_something_pending(monkeypatch):
    """Per backward(), the step-order bookkeeping visits the optimizers that have a probe set or
    cleared gradients to report, not every optimizer the session has seen: n optimizers that are
    only zero_grad()-ed cost nothing per backward, and a plain loop's backward visits none once
    the probes' first steps are over."""
    from gradwatch.monitors import step_order

    visited: list[int] = []
    pending_in_order = step_order.StepOrder._pending_in_order
    monkeypatch.setattr(step_order.StepOrder, "_pending_in_order",
                        lambda self: (lambda items: visited.append(len(items)) or items)(pending_in_order(self)))

    def run(n_idle: int, rounds: int) -> list[int]:
        visited.clear()
        torch.manual_seed(0)
        w = nn.Parameter(torch.randn(4))
        idle = [nn.Parameter(torch.randn(4)) for _ in range(n_idle)]

        def train():
            opt = torch.optim.SGD([w], lr=1e-2)
            others = [torch.optim.SGD([p], lr=1e-2) for p in idle]  # zero_grad()-ed, never stepped
            for _ in range(rounds):
                opt.zero_grad()
                for o in others:
                    o.zero_grad()
                w.square().sum().backward()
                opt.step()
        watched(train)
        return list(visited)

    # backward 1: nothing pending yet; 2-17: the probe of steps 1-16; then none is visited (no
    # backward() looks) except after a probed step (every 8th: step 24 -> backward 25)
    few, many = run(10, 26), run(1_000, 26)
    assert few == many == [0] + [1] * 16 + [1]


def _reduced_together_and_one_by_one(monkeypatch, setup, iterations: int, **options):
    """The gradient statistics of a loop over the optimizers and the loss that ``setup()`` makes
    (afresh for each run): reduced in groups at the cell's end, then again with each series
    reduced on its own; and the sizes of the first run's groups. In the optimizers' key order."""
    def measurements() -> list:
        opts, loss_at = setup()
        found = []

        def run():
            for i in range(iterations):
                for o in opts:
                    o.zero_grad()
                loss_at(i).backward()
                for o in opts:
                    o.step()
            found.append(session_mod.current().events)

        watched(run, **options)
        return sorted((m for m in found[0].measurements if isinstance(m, GradientStatistics)),
                      key=lambda m: m.optimizer.key)  # (in the order their series were first needed)

    together = measurements()
    flushed: list[int] = []
    monkeypatch.setattr(grad_stats.GradStats, "_flush_group", lambda self, group, B: flushed.append(len(group)))
    return together, measurements(), flushed


def test_short_series_of_many_optimizers_are_reduced_together_with_the_same_figures(monkeypatch):
    def setup():
        torch.manual_seed(0)
        live, dead, nan, partial = (nn.Linear(3, 2) for _ in range(4))
        with torch.no_grad():
            dead.weight.zero_()
            dead.bias.zero_()
        unused = nn.Parameter(torch.randn(2))
        opts = [torch.optim.SGD(m.parameters(), lr=1e-2) for m in (live, dead, nan)]
        opts.append(torch.optim.SGD([*partial.parameters(), unused], lr=1e-2))
        x = torch.randn(8, 3)
        return opts, lambda i: (live(x).square().mean() + (dead(x) * 0).sum()
                                + (nan(x) * (float("nan") if i >= 9 else 1.0)).mean()
                                + partial(x).mean() * (i + 1) ** 3)

    together, one_by_one, flushed = _reduced_together_and_one_by_one(monkeypatch, setup, 12)
    assert flushed == [4]  # (so the first run reduced the four series in one go)
    assert len(together) == 4 and together == one_by_one
    assert [m.first_nonfinite_step for m in together][2] == [10.0, 10.0]
    assert together[1].zero_run == [12.0, 12.0] and together[3].n_present == [12.0, 12.0, 0.0]


def test_series_sampled_at_different_steps_are_reduced_together_with_the_same_figures(monkeypatch):
    # 8 optimizers, 2 checked per backward(): they take turns, so each series holds rows of its
    # own steps; the series with as many rows are reduced together, each with its own rows' figures
    from gradwatch.monitors.schedule import StepSchedule

    def setup():
        torch.manual_seed(0)
        params = [nn.Parameter(torch.randn(3)) for _ in range(8)]
        with torch.no_grad():
            params[5].zero_()  # (a zero gradient: its zero run and last non-zero step)
        opts = [torch.optim.SGD([p], lr=1e-2) for p in params]
        return opts, lambda i: (sum((p * (k + 1)).square().sum() for k, p in enumerate(params))
                                + params[0].sum() * (float("nan") if i >= 2 else 1.0))

    together, one_by_one, flushed = _reduced_together_and_one_by_one(
        monkeypatch, setup, 6, schedule=StepSchedule(checked_per_backward=2))
    # the traced first backward() reaches all 8: they take turns from the first iteration on,
    # optimizer k after backward() call n where (k + n) % 4 == 0. Two rows (2, 3, 6, 7: calls
    # n and n + 4), one row (1, 4, 5, 8): two reductions of four series
    assert flushed == [4, 4]
    assert len(together) == 8 and together == one_by_one
    assert [m.optimizer.key for m in together] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [m.sampled_steps for m in together] == [1, 2, 2, 1, 1, 2, 2, 1]
    assert [m.last_sampled_step for m in together] == [3, 6, 5, 4, 3, 6, 5, 4]
    assert [m.first_nonfinite_step for m in together][:3] == [[3.0], [math.inf], [math.inf]]
    assert [m.last_finite_step for m in together][:3] == [0.0, 6.0, 5.0]  # (1: its only row is NaN)
    assert [m.ever_nonzero for m in together][4:6] == [[True], [False]]
    assert [m.last_nonzero_step for m in together] == [[3.0], [6.0], [5.0], [4.0], [3.0], [0.0], [5.0], [4.0]]


def test_the_first_non_finite_op_names_the_inputs_that_already_held_nan():
    # an input's slot keeps the node that names it (the op's record holds numbers only)
    from gradwatch.measurements import NonFiniteOrigin

    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    x = torch.randn(8, 4)
    x[3, 1] = float("inf")  # the data: non-finite before any op
    y = torch.randn(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    found = []

    def run():
        for _ in range(2):
            opt.zero_grad()
            loss = nn.functional.mse_loss(torch.tanh(model(x)), y)
            loss.backward()
            opt.step()
        found.append(session_mod.current().events)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gradwatch.watch(warn=False, namespace={"model": model, "x": x, "y": y, "opt": opt}):
            run()
    [origin] = [m for m in found[0].measurements if isinstance(m, NonFiniteOrigin)]
    assert origin.op == "linear" and origin.inputs == ["x"] and origin.iteration == 1


def test_the_cpu_finite_check_flags_exactly_the_tensors_with_a_non_finite_element():
    # On the CPU the traced ops are checked by 2-norms (the largest-magnitude norm has no
    # vectorized kernel there): a large but finite tensor, whose squares overflow, is finite
    from gradwatch.monitors import op_checks

    big = torch.full((1000,), 3e30)  # 2-norm: Inf in float32
    half = torch.full((100_000,), 100.0, dtype=torch.float16)  # 2-norm 31,623 (fp16 max 65,504)
    half_big = torch.full((100_000,), 60_000.0, dtype=torch.float16)
    nan, pos, neg = torch.randn(500), torch.randn(500), torch.randn(500)
    nan[7], pos[3], neg[9] = float("nan"), float("inf"), float("-inf")
    assert torch.linalg.vector_norm(big, 2).isinf()  # (what the exact re-check is for)
    # (CPU tensors' flags are read at once: a list)
    assert op_checks._finite_flags([big, nan, torch.randn(64), pos, neg]) == [True, False, True, False, False]
    assert op_checks._finite_flags([half, half_big]) == [True, True]
    assert op_checks._finite_flags([half_big, torch.tensor([1.0, float("nan")], dtype=torch.float16)]) \
        == [True, False]


def test_loss_shapes_broadcast_as_torch_broadcasts_them():
    # GW111's shapes: torch's rule, worked out without torch.broadcast_shapes (a Python loop
    # that raises for every class-index target, in every traced cross-entropy call)
    import itertools

    from gradwatch.monitors.op_checks import _broadcast

    shapes = [list(s) for n in range(4) for s in itertools.product([0, 1, 2, 3], repeat=n)]
    for a, b in itertools.product(shapes, shapes):
        try:
            want = list(torch.broadcast_shapes(torch.Size(a), torch.Size(b)))
        except RuntimeError:
            want = None
        assert _broadcast(a, b) == want, (a, b)
    assert _broadcast([64, 10], [64]) is None and _broadcast([8, 1], [8]) == [8, 8]


def _count_stacked_checks(monkeypatch) -> list[int]:
    """The tensors of each traced-op check that went stacked by shape (see `monitors.norms`)."""
    from gradwatch.monitors import op_checks

    stacked: list[int] = []
    grouped = op_checks.grouped_norms

    def counting(tensors, groups, rest, *args, **kwargs):
        stacked.append(sum(len(idx) for idx in groups))
        return grouped(tensors, groups, rest, *args, **kwargs)

    monkeypatch.setattr(op_checks, "grouped_norms", counting)
    return stacked


def test_large_but_finite_activations_name_no_non_finite_op(monkeypatch):
    # activations near 1e30 (squares overflow float32) are no NaN, whether checked stacked by
    # shape (many small layers) or by `_foreach_norm` (a large tensor): no origin, no GW105
    torch.manual_seed(0)
    layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(20))
    x = torch.randn(16, 4)
    opt = torch.optim.SGD(layers.parameters(), lr=0.0)
    stacked = _count_stacked_checks(monkeypatch)
    found = []

    def run():
        for _ in range(3):
            opt.zero_grad()
            big = [layer(x) * 1e29 for layer in layers]  # 16 x 4 each: checked stacked
            wide = big[0].repeat(1, 2048)  # 131,072 values: checked by `_foreach_norm`
            loss = (torch.stack(big) / 1e29).square().mean() + (wide / 1e29).square().mean()
            loss.backward()
            opt.step()
        found.append(session_mod.current().events)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gradwatch.watch(warn=False, namespace={"layers": layers, "x": x, "opt": opt}) as report:
            run()
    assert not [m for m in found[0].measurements if isinstance(m, NonFiniteOrigin)]
    assert "GW105" not in report.codes
    assert sum(stacked) >= 40  # the layers' outputs and the products, at least


def test_nan_among_many_small_layers_is_found_by_the_checks_stacked_by_shape(monkeypatch):
    """The traced ops' non-finite checks of a model of many small CPU layers go by shape group
    (see `monitors.norms`), and still name the first op that made a NaN."""
    torch.manual_seed(0)
    layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(40))
    with torch.no_grad():
        for j, layer in enumerate(layers):
            layer.weight.zero_()
            layer.bias.fill_(-1.0 if j == 30 else 1.0)  # log(-1) = NaN in branch 30 only
    opt = torch.optim.SGD(layers.parameters(), lr=0.0)
    x = torch.rand(8, 4)
    stacked = _count_stacked_checks(monkeypatch)

    def run():
        for _ in range(3):
            opt.zero_grad()
            hidden = [layer(x) for layer in layers]
            logs = [torch.log(a) for a in hidden[:30]]
            logs += [torch.log(b) for b in hidden[30:]]  # hidden[30] is -1: the first NaN
            loss = torch.stack(logs).mean()
            loss.backward()
            opt.step()

    report = watched(run)
    [d] = [d for d in report if d.code == "GW105"]
    assert d.location.text == "torch.log(b)" and d.evidence["op"] == "log"
    assert sum(stacked) >= 80  # the 40 outputs of each kind, at least, checked stacked
