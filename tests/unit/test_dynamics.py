"""The training-dynamics monitor (GW101-GW115) in plain Python: bounded state, sampling, traces
requested after a NaN, cleanup, and the rules' interplay on recorded findings."""

from __future__ import annotations

import gc
import importlib.util
import warnings
import weakref
from pathlib import Path

import pytest
import torch
from torch import nn

import gradwatch
from gradwatch import session as session_mod
from gradwatch.events import Events
from gradwatch.rules import registry
from gradwatch.trace import dyn_stats

ROOT = Path(__file__).resolve().parents[2]


def watched(fn, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gradwatch.watch(warn=False, namespace={}, **options) as report:
            fn()
    return report


def monitor():
    return session_mod.current()._monitors[0]


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
        if i + 1 in (300, 3000):
            m = monitor()
            s = m.stats.series[1]
            seen[i + 1] = (len(s.rows), len(s.losses), len(m.stats.pending), len(m.ops.records),
                           sorted((k, tuple(v.shape)) for k, v in s.acc.items()),
                           sorted((k, tuple(v.shape)) for k, v in s.lacc.items()))

    watched(lambda: loop(model, opt, x, y, 3000, check))
    rows, losses, pending, records, acc, lacc = seen[3000]
    assert rows < dyn_stats._BLOCK and losses < dyn_stats._CHUNK and pending <= 1
    assert records <= 4  # traced iterations only
    assert acc == seen[300][4] and lacc == seen[300][5]  # fixed shapes: 4 parameter tensors
    assert ("first_bad", (4,)) in acc and ("tail", (16,)) in lacc


def test_stride_adapts_and_dead_parameters_are_still_found(monkeypatch):
    monkeypatch.setattr(dyn_stats, "_TARGET", 1e-9)  # statistics "too expensive": widest stride
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    x, y = torch.randn(32, 8), torch.randn(32, 1)
    strides = []
    report = watched(lambda: loop(model, opt, x, y, 1500,
                                  lambda i: i == 1499 and strides.append(monitor().stats.series[1].stride)))
    assert strides == [dyn_stats._MAX_STRIDE]
    [dead] = [d for d in report if d.code == "GW108"]
    # fc1.weight, fc1.bias, fc2.weight (named after the optimizer: the model is no global here)
    assert dead.evidence["parameters"] == [f"optimizer#1.param_groups[0]['params'][{i}]" for i in range(3)]
    assert dead.evidence["zero_steps"] >= 1000


def test_nan_seen_later_requests_a_trace_that_names_the_op():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    good, y = torch.rand(16, 3) + 0.5, torch.randn(16, 1)
    bad = good.clone()
    bad[2, 1] = -1.0  # log(-1) = NaN from iteration 151 on

    def run():
        for i in range(400):
            opt.zero_grad()
            x = good if i < 150 else bad
            features = torch.log(x)
            loss = nn.functional.mse_loss(model(features), y)
            loss.backward()
            if torch.isfinite(loss):  # the user's own guard keeps the parameters finite
                opt.step()

    report = watched(run)
    [d] = [d for d in report if d.code == "GW105"]
    assert d.location.text == "torch.log(x)"
    assert d.evidence["loss_step"] == 151 and d.evidence["op"] == "log"


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


# --- rules on recorded findings ----------------------------------------------------------------
def run_rules(findings):
    events = Events()
    events.extra["dynamics"] = findings
    return registry.run(events)


def test_flat_loss_is_not_reported_when_the_learning_rate_is_zero():
    base = dict(optimizer_key=1, optimizer="opt", optimizer_location=None, loss=None, steps=100)
    diags = run_rules([dict(base, code="GW114", kind="lr", step=None, params=["w"]),
                       dict(base, code="GW112", mean=1.0, spread=0.0, n=100)])
    assert [d.code for d in diags] == ["GW114"]
    assert diags[0].message == ("`opt` has learning rate 0, so `opt.step()` changes no parameter; "
                                "set a positive `lr`")


def test_zero_gradients_left_by_zero_grad_before_step_are_gw102s():
    base = dict(optimizer_key=1, optimizer="opt", optimizer_location=None, loss=None, steps=10)
    diags = run_rules([dict(base, code="GW102", zero_grad=None, step=None, backward=None),
                       dict(base, code="GW114", kind="zero_grads", params=["w"])])
    assert [d.code for d in diags] == ["GW102"]


def test_non_finite_message_names_step_parameters_and_origin():
    from gradwatch.diagnostics import Location

    op = Location(3, 16, 3, 30, "    features = torch.log(raw)", cell=5)
    bwd = Location(5, 5, 5, 20, "    loss.backward()", cell=5)
    diags = run_rules([
        dict(code="GW105", kind="values", optimizer_key=1, optimizer="optimizer", optimizer_location=None,
             loss=bwd, steps=10, grad_step=1, loss_step=1, params=["model.weight"], n_params=1),
        dict(code="GW105", kind="origin", op="log", location=op, inputs=[], iteration=1)])
    [d] = diags
    assert d.location == op and d.evidence["step"] == 1
    assert d.message.startswith("`loss` first became NaN/Inf at step 1; the first non-finite value "
                                "came from `torch.log(raw)`")


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

    on_step = dyn_stats.GradStats.on_step

    def syncing_on_step(self, *args, **kwargs):
        if mode[0] == "error":
            raise RuntimeError("called a synchronizing CUDA operation")
        return on_step(self, *args, **kwargs)

    monkeypatch.setattr(dyn_stats.GradStats, "on_step", syncing_on_step)
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
        assert dyn_stats._steps_tensor(steps, torch.device("cpu")).tolist() == steps
