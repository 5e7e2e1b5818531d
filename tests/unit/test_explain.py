"""The facts behind PyTorch's opaque backward() errors (trace/explain.py), gathered in-process
through the session's helpers: what each error's diagnostic names."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import gradwatch


def failing(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError):
            with gradwatch.watch(warn=False, namespace={}) as report:
                fn()
    return report


def test_a_non_scalar_loss():
    def cell():
        w = torch.ones(3, requires_grad=True)
        loss = nn.functional.mse_loss(w * 2, torch.zeros(3), reduction="none")
        loss.backward()
    report = failing(cell)
    assert report.codes == ["GW009"]


def test_a_second_backward_through_a_freed_graph_names_the_carried_tensor():
    def cell():
        w = torch.ones(2, requires_grad=True)
        hidden = torch.zeros(2)
        for _ in range(2):
            hidden = torch.tanh(w * hidden + 1)
            hidden.sum().backward()
    report = failing(cell)
    assert report.codes == ["GW010"]
    assert "hidden" in report.diagnostics[0].message


def test_an_in_place_write_by_an_optimizer_step_points_at_the_step():
    def cell():
        encoder, d = nn.Linear(2, 2), nn.Linear(2, 1)
        opt = torch.optim.SGD([*encoder.parameters(), *d.parameters()], lr=0.1)
        x = torch.ones(4, 2)
        out = d(encoder(x)).sum()  # d.weight is saved for the encoder's gradient
        d(encoder(x)).sum().backward()
        opt.step()
        out.backward()
    report = failing(cell)
    assert report.codes == ["GW005"]
    assert report.diagnostics[0].location.text.strip().startswith("opt.step()")
