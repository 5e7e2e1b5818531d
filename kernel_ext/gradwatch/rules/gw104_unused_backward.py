"""## What it does
Flags `backward()` calls whose gradients no `optimizer.step()` ever uses: `zero_grad()` clears
them before any step, or the cell's optimizer is never stepped at all. GradScaler steps that
skip an update on purpose count as steps. A loop that does step, every few `backward()` calls,
but clears the micro-batches' gradients in between is GW102's (the `zero_grad()` is misplaced,
not the `step()`).

## Why is this bad?
The backward pass is the most expensive part of a training step; when its gradients are thrown
away the parameters never change. Typical causes: `optimizer.step()` forgotten, indented
outside the loop, or behind a condition that is never true.

## Example
```python
for x, y in loader:
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
optimizer.step()
```

## Use instead
```python
for x, y in loader:
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
```
"""

from __future__ import annotations

from ..measurements import ClearedUnusedGradients, NeverStepped
from .base import Context, Rule, Severity, display_fix, related
from .gw102_zero_grad_before_step import clears_micro_batches
from .gw105_non_finite import became_non_finite


class UnusedBackward(Rule):
    code = "GW104"
    name = "unused-backward"
    severity = Severity.WARNING
    summary = "`backward()` computes gradients that no `optimizer.step()` uses."

    def check(self, ctx: Context):
        nonfinite = became_non_finite(ctx)
        # an optimizer never stepped: that is the one finding, whatever zero_grad() cleared
        never_stepped = {m.optimizer.key for m in ctx.measured(NeverStepped)} \
            if ctx.events.cell_error is None else set()
        for m in ctx.measured(ClearedUnusedGradients):
            if m.then != "backward" or nonfinite or m.optimizer.steps > m.times or m.optimizer.key in never_stepped:
                continue  # steps skipped on purpose (a NaN guard) in a loop that mostly steps
            if clears_micro_batches(m):
                continue  # the loop steps every few backward() calls: GW102's zero_grad()
            opt, bwd = m.optimizer.name, m.backward
            call = f"`{bwd.text}`" if bwd is not None and bwd.text else "`backward()`"
            message = f"`{opt}.zero_grad()` clears the gradients of {call} before any step uses them"
            help = (f"No `{opt}.step()` uses them, so they are computed for nothing: call `{opt}.step()` after "
                    f"every `backward()`.")
            yield self.diagnostic(message, bwd or m.zero_grad, help=help,
                                  related=related(m.zero_grad, "the gradients are cleared here, unused"),
                                  fix=display_fix(f"Call `{opt}.step()` after `backward()`"),
                                  optimizer=opt, kind="discarded")
        if ctx.events.cell_error is not None:
            return  # the cell raised before it could reach `step()`: nothing to judge
        for never in ctx.measured(NeverStepped):
            opt, bwd = never.optimizer.name, never.backward
            call = f"`{bwd.text}`" if bwd is not None and bwd.text else "`backward()`"
            message = f"the gradients of {call} are never used: `{opt}.step()` is never called"
            help = f"The model does not learn from them: call `{opt}.step()` after `backward()`."
            yield self.diagnostic(message, bwd or never.zero_grad, help=help,
                                  related=related(never.optimizer.location, f"`{opt}` is created here"),
                                  fix=display_fix(f"Call `{opt}.step()` after `backward()`"),
                                  optimizer=opt, kind="never_stepped")
