"""One row per optimizer, shared by the session and its monitors (issue 8 §1): every counter is
kept once, on the optimizer table's row, and a step is counted once. In-process, real torch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradwatch
from gradwatch.events import StepCounts


def _loop(steps: int, *, frozen_grad: bool = False, manual: bool = False):
    """A small loop inside a watch; returns the session, the optimizer and what the rows held
    while the cell ran (they lose the monitors' state at its end)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    unused = nn.Parameter(torch.zeros(3))  # in the optimizer, never in the loss
    params = list(model.parameters()) + ([unused] if frozen_grad else [])
    opt = torch.optim.SGD(params, lr=0.1)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    watch = gradwatch.watch(warn=False, namespace={})
    seen = {}
    with watch:
        for _ in range(steps):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            if manual:  # gradients computed by autograd.grad and assigned: they feed the step
                grads = torch.autograd.grad(loss, list(model.parameters()))
                for p, g in zip(model.parameters(), grads, strict=True):
                    p.grad = g
            else:
                loss.backward()
            opt.step()
        record = watch.optimizers.record(opt)
        monitor = watch._monitor
        seen = dict(record=record, order=record.order, series=record.series,
                    order_state=monitor.order.opts.get(record.key),
                    series_state=monitor.stats.series.get(record.key))
    return watch, opt, seen


def test_the_session_and_the_monitors_share_one_row_per_optimizer() -> None:
    watch, opt, seen = _loop(5)
    record = seen["record"]
    assert record is watch.optimizers.record(opt)
    assert record.key == 1 and record.steps == 5  # counted once per step, by the session
    # the monitors' parts keep their state for the optimizer on that same row
    assert seen["order"] is not None and seen["order"] is seen["order_state"]
    assert seen["series"] is not None and seen["series"] is seen["series_state"]
    assert record.backwards_at_step == 5 and record.backwards_at_zero_grad == 4
    assert record.calls_at_step_or_zero_grad == 5
    # the missing-gradient counts are the row's; GW006 reads them only where a check found one
    assert (record.checked_steps, record.steps_missing) == (5, 0)
    assert watch.events.step_counts == {}
    assert record.order is None and record.series is None  # dropped at the end of the cell


def test_steps_that_find_parameters_without_gradient_are_counted_on_the_row() -> None:
    watch, _, seen = _loop(20, frozen_grad=True)
    # steps 1-16 are checked, then every 16th: 17-20 are not (the schedule)
    assert watch.events.step_counts == {1: StepCounts(steps=20, checked=16, missing=16)}
    assert [d.code for d in watch.report.diagnostics] == ["GW006"]


def test_gradients_from_autograd_grad_count_as_the_steps_calls() -> None:
    # `p.grad = g` after autograd.grad(): each step has its gradients, nothing is missing
    watch, _, seen = _loop(4, manual=True)
    record = seen["record"]
    assert record.calls_at_step_or_zero_grad == 4  # autograd.grad calls feed the step
    assert record.backwards_at_step == 0  # no backward() filled .grad
    assert (record.steps, record.checked_steps, record.steps_missing) == (4, 4, 0)
    assert watch.events.step_counts == {}


def test_the_monitor_keeps_no_optimizer_table_of_its_own() -> None:
    watch, _, _ = _loop(2)
    monitor = watch._monitor
    assert not any(isinstance(value, dict) and any(hasattr(v, "backwards_at_step") for v in value.values())
                   for value in vars(monitor).values())
    with pytest.raises(AttributeError):
        monitor.records  # noqa: B018


def test_the_owner_index_is_rebuilt_only_when_parameter_groups_change(monkeypatch):
    from gradwatch.install.optimizer_table import OptimizerTable

    indexed: list[int] = []  # optimizer keys indexed
    index = OptimizerTable._index
    monkeypatch.setattr(OptimizerTable, "_index", lambda self, opt, key: indexed.append(key) or index(self, opt, key))
    torch.manual_seed(0)
    model, extra = nn.Linear(4, 2), nn.Linear(2, 2)
    x = torch.randn(8, 4)
    watch = gradwatch.watch(warn=False, namespace={}, trace_steps=4)
    with watch:
        opt = torch.optim.SGD(model.parameters(), lr=0.1)  # indexed when registered ...
        model(x).sum().backward()  # ... and not again at each traced backward while its
        model(x).sum().backward()  # groups hold the same tensors
        assert indexed == [1]
        opt.add_param_group({"params": list(extra.parameters())})
        extra(model(x)).sum().backward()  # a group added: indexed again, its tensors owned
        assert indexed == [1, 1]
        assert [key for _, key in watch.optimizers.owners(extra.weight)] == [1]
        opt.param_groups[1]["params"][0] = replaced = nn.Parameter(torch.zeros(2, 2))
        (extra(model(x)).sum() + replaced.sum()).backward()  # a tensor replaced: again
        assert indexed == [1, 1, 1]
        assert [key for _, key in watch.optimizers.owners(replaced)] == [1]


def test_the_owner_index_counts_an_optimizer_while_it_holds_the_tensor():
    from gradwatch.install.optimizer_table import OptimizerTable

    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(3))
    first, second = torch.optim.SGD([a, b], lr=0.1), torch.optim.SGD([b], lr=0.1)
    table = OptimizerTable()
    k1, k2 = table.register(first, None).key, table.register(second, None).key
    assert table.owner_keys_of(a) == [k1] and table.owner_keys_of(b) == [k1, k2]
    assert table.owner_keys({id(a), id(b)}) == {k1, k2}
    first.param_groups[0]["params"][1] = nn.Parameter(torch.zeros(3))  # b taken out of `first`
    assert table.owner_keys_of(b) == [k2] and [k for _, k in table.owners(b)] == [k2]
    del first  # gone: it owns nothing (no reindex needed)
    assert table.owner_keys_of(a) == [] and table.owner_keys({id(a)}) == set()
    third = torch.optim.SGD([b], lr=0.1)  # a third owner of b, after the first one's entry
    k3 = table.register(third, None).key
    assert table.owner_keys_of(b) == [k2, k3]
    assert table.owner_keys_of(nn.Parameter(torch.zeros(1))) == []


def test_a_traced_backward_lists_the_live_optimizers_once(monkeypatch):
    # (1,000 optimizers: each listing is two passes over every row; the owner index's check, the
    # namer's optimizers, the check for any optimizer and the trainables share one; it was four
    # listings per traced backward, then two)
    import gc

    from gradwatch.install.optimizer_table import OptimizerTable

    listings: list[int] = []
    items = OptimizerTable.items
    monkeypatch.setattr(OptimizerTable, "items", lambda self: listings.append(1) or items(self))
    params = [nn.Parameter(torch.ones(2)) for _ in range(3)]
    watch = gradwatch.watch(warn=False, namespace={}, trace_steps=1)
    with watch:
        opts = [torch.optim.SGD([p], lr=0.5) for p in params]
        listings.clear()
        torch.stack(params).sum().backward()
        assert len(listings) == 1
        assert bool(watch.optimizers) and watch.optimizers.keys() == opts
        del opts[1]
        gc.collect()
        assert watch.optimizers.keys() == opts and bool(watch.optimizers)
        del opts[:]
        gc.collect()
        assert watch.optimizers.keys() == [] and not watch.optimizers
