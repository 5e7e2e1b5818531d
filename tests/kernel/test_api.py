"""``gradwatch.watch()`` in a plain Python process (no kernel): the report, `GradwatchWarning`s
that point at this file's lines, options, nesting, and cleanup."""

from __future__ import annotations

import gc
import inspect
import warnings
import weakref

import pytest
import torch

import gradwatch
from gradwatch import GradwatchWarning

import harness


def _line_of(text: str) -> int:
    """The line of this file that contains ``text`` (exactly once)."""
    lines = inspect.getsource(inspect.getmodule(_line_of)).split("\n")
    hits = [n for n, line in enumerate(lines, 1) if text in line and "_line_of(" not in line]
    assert len(hits) == 1, hits
    return hits[0]


def _train_with_constant_w(**options):
    with gradwatch.watch(**options) as report:
        w = torch.randn(1, 1)  # the untrained weight
        b = torch.randn(1, 1, requires_grad=True)
        opt = torch.optim.SGD([w, b], lr=0.1)
        for _ in range(3):
            loss = ((torch.ones(3, 1) @ w + b) ** 2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
    return report


def test_watch_reports_and_warns_at_the_line():
    with pytest.warns(GradwatchWarning) as record:
        report = _train_with_constant_w(select=["GW0"])
    assert issubclass(GradwatchWarning, UserWarning)
    assert report.codes == ["GW001"]
    [d] = report.diagnostics
    line = _line_of("w = torch.randn(1, 1)  # the untrained weight")
    assert (d.location.path, d.location.line, d.location.column, d.location.end_column) == (__file__, line, 13, 30)
    assert d.location.cell is None and d.location.text == "torch.randn(1, 1)"
    [warning] = [r for r in record if issubclass(r.category, GradwatchWarning)]
    assert (warning.filename, warning.lineno) == (__file__, line)
    assert str(warning.message).startswith("GW001 `w` is created without `requires_grad=True`")
    harness.validate_payload(report.to_payload())
    assert report.to_payload()["cell"] == {"execution_count": None}


def test_warnings_become_errors_with_an_error_filter():
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradwatchWarning)
        with pytest.raises(GradwatchWarning, match="GW001"):
            _train_with_constant_w(select=["GW001"])


def test_warn_false_and_ignore():
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradwatchWarning)
        report = _train_with_constant_w(warn=False, select=["GW0"])
        assert report.codes == ["GW001"]
        assert _train_with_constant_w(ignore=["GW0", "GW1"]).codes == []


def test_unknown_code_is_named():
    with pytest.raises(ValueError, match="unknown rule code 'GW777'"):
        gradwatch.watch(select=["GW777"])


def test_sessions_do_not_nest():
    with gradwatch.watch(warn=False):
        with pytest.raises(RuntimeError, match="do not nest"):
            with gradwatch.watch(warn=False):
                pass


def test_clean_code_gives_an_empty_report_and_restores_torch():
    before = (torch.Tensor.__dict__["backward"], torch.autograd.backward, torch.autograd.grad,
              torch.optim.Optimizer.__dict__["__init__"], torch.optim.Optimizer.__dict__["zero_grad"],
              torch._C._len_torch_function_stack())
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradwatchWarning)
        with gradwatch.watch() as report:
            model = torch.nn.Linear(3, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for _ in range(3):
                opt.zero_grad()
                loss = model(torch.randn(4, 3)).pow(2).mean()
                loss.backward()
                opt.step()
    assert report.diagnostics == []
    after = (torch.Tensor.__dict__["backward"], torch.autograd.backward, torch.autograd.grad,
             torch.optim.Optimizer.__dict__["__init__"], torch.optim.Optimizer.__dict__["zero_grad"],
             torch._C._len_torch_function_stack())
    assert all(a is b for a, b in zip(after[:5], before[:5], strict=True)) and after[5] == before[5]


def _failing_training(refs):
    with gradwatch.watch(warn=False, select=["GW0"]) as report:
        try:
            w = torch.randn(2, 1)
            refs.append(weakref.ref(w))
            opt = torch.optim.SGD([w], lr=0.1)  # noqa: F841 (kept alive: gradwatch holds optimizers weakly)
            (torch.ones(3, 2) @ w).sum().backward()
        except RuntimeError as exc:
            caught = exc
    return report, caught


def test_exception_passes_through_with_a_note_and_nothing_is_kept():
    refs = []
    with pytest.raises(RuntimeError) as info:
        with gradwatch.watch(warn=False, select=["GW0"]) as report:
            w = torch.randn(2, 1)
            opt = torch.optim.SGD([w], lr=0.1)  # noqa: F841 (kept alive: gradwatch holds optimizers weakly)
            (torch.ones(3, 2) @ w).sum().backward()
    assert str(info.value) == "element 0 of tensors does not require grad and does not have a grad_fn"
    assert any(n.startswith("gradwatch GW001: `w` is created without") for n in info.value.__notes__)
    assert report.codes == ["GW001"]
    # the user's frame is gone: nothing of gradwatch's keeps the tensor
    report, caught = _failing_training(refs)
    assert report.codes == ["GW001"] and isinstance(caught, RuntimeError)
    del caught
    gc.collect()
    assert refs[0]() is None
    assert torch.Tensor.__dict__["backward"].__module__ == "torch._tensor"
