"""GW105 through a real kernel: a NaN that is already in the forward pass (an input held NaN) is
said as such, at the line that computes the loss; a gradient that turns non-finite while the loss
is finite keeps the backward wording."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.kernel

NAN_IN_BATCH = """\
%%gradwatch
import torch
from torch import nn
torch.manual_seed(0)
model = nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range({steps}):
    x, y = torch.randn(16, 8), torch.randn(16, 1)
    if step == {bad}:
        {spoil}
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y){extra}
    loss.backward()
    optimizer.step()
"""


def test_a_nan_in_an_input_batch_late_in_a_long_loop_is_said_to_be_in_the_forward(kernel):
    cell = kernel.run(NAN_IN_BATCH.format(steps=2000, bad=1500, spoil='x[3, 2] = float("nan")', extra=""))
    (d,) = cell.diagnostics
    assert d["code"] == "GW105" and d["evidence"]["loss_step"] == 1501
    # gradients are sampled every few steps in a long loop: the step before the NaN was not checked
    assert d["message"] == "`loss` was already NaN/Inf in the forward pass of the 1,501st `backward()` call"
    said = re.fullmatch(
        r"The gradients "
        r"were finite when last checked, at the 1,(\d{3})(?:st|nd|rd|th) `step\(\)`: an input of that step "
        r"\(a batch\) may hold NaN/Inf, "
        r"or the `backward\(\)` of the step before made a NaN/Inf gradient\. Check the inputs with "
        r"`torch.isfinite\(x\).all\(\)`, or guard the op that makes it \(`log` or a division at 0: clamp its "
        r"input, add an epsilon\)\.", d["help"])
    assert said is not None, d["help"]
    assert 1500 - 32 <= 1000 + int(said.group(1)) < 1500 <= d["evidence"]["grad_step"]
    assert (d["location"]["line"], d["location"]["column"]) == (12, 12)  # `nn.functional.mse_loss(...)`
    assert [(r["location"]["line"], r["message"]) for r in d["related"]] == [
        (13, "`loss.backward()` saw a NaN/Inf loss from the 1,501st `backward()` call on"),
        (6, "`optimizer` applies the NaN/Inf gradients")]


def test_a_nan_input_in_a_loop_whose_gradients_are_all_checked_is_said_plainly(kernel):
    cell = kernel.run(NAN_IN_BATCH.format(steps=30, bad=22, spoil='x[3, 2] = float("nan")', extra=""))
    (d,) = cell.diagnostics
    assert d["message"] == "`loss` was already NaN/Inf in the forward pass of the 23rd `backward()` call"
    assert d["help"].startswith(
        "Every gradient before it was finite: an input of that step (a batch) may hold NaN/Inf. Check the inputs")
    assert d["location"]["line"] == 12


def test_a_gradient_that_turns_nan_while_the_loss_is_finite_keeps_the_backward_wording(kernel):
    # sqrt at exactly 0: the loss stays finite, its gradient is inf * 0 = NaN
    cell = kernel.run(NAN_IN_BATCH.format(steps=30, bad=22, spoil="scale = 0.0", extra=(
        " + (model.weight.pow(2).sum() * scale).sqrt()\n    scale = 1.0")).replace(
        "for step", "scale = 1.0\nfor step"))
    (d,) = [d for d in cell.diagnostics if d["code"] == "GW105"]
    assert d["evidence"]["grad_step"] == 23 and d["evidence"]["loss_step"] == 24
    assert d["message"].startswith("the gradient of `model.weight` first became NaN/Inf at step 23"), d["message"]
    assert "forward pass" not in d["message"] + d["help"]
