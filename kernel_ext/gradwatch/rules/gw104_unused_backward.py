"""## What it does
Flags `backward()` calls whose gradients no `optimizer.step()` ever uses: `zero_grad()` clears
them before any step, or the cell's optimizer is never stepped at all. GradScaler steps that
skip an update on purpose count as steps.

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
from .gw105_non_finite import became_non_finite


class UnusedBackward(Rule):
    code = "GW104"
    name = "unused-backward"
    severity = Severity.WARNING
    summary = "`backward()` computes gradients that no `optimizer.step()` uses."

    def check(self, ctx: Context):
        nonfinite = became_non_finite(ctx)
        for m in ctx.measured(ClearedUnusedGradients):
            if m.then != "backward" or nonfinite or m.optimizer.steps > m.times:
                continue  # steps skipped on purpose (a NaN guard) in a loop that mostly steps
            opt, bwd = m.optimizer.name, m.backward
            call = f"`{bwd.text}`" if bwd is not None and bwd.text else "`backward()`"
            where = bwd or m.zero_grad
            if m.optimizer.steps >= 2 and m.zero_grad is not None:
                # the loop does step, every few backward() calls (gradient accumulation), but a
                # zero_grad() between them throws the earlier micro-batches away: that is the line
                zg = m.zero_grad
                message = (f"`{zg.text or opt + '.zero_grad()'}` clears the gradients of {call} before "
                           f"`{opt}.step()` uses them ({m.times:,} times), so only the last "
                           f"micro-batch before each step counts; call `{opt}.zero_grad()` right after "
                           f"`{opt}.step()` instead")
                rel = related(bwd, "these gradients are thrown away")
                where = zg
            else:
                message = (f"the gradients of {call} are cleared by `{opt}.zero_grad()` before any "
                           f"`{opt}.step()` uses them; call `{opt}.step()` after every `backward()`")
                rel = related(m.zero_grad, "the gradients are cleared here, unused")
            yield self.diagnostic(message, where, related=rel,
                                  fix=display_fix(f"Call `{opt}.step()` after `backward()`"),
                                  optimizer=opt, kind="discarded")
        if ctx.events.cell_error is not None:
            return  # the cell raised before it could reach `step()`: nothing to judge
        for never in ctx.measured(NeverStepped):
            opt, bwd = never.optimizer.name, never.backward
            call = f"`{bwd.text}`" if bwd is not None and bwd.text else "`backward()`"
            message = (f"the gradients of {call} are never used because `{opt}.step()` is never "
                       f"called; call `{opt}.step()` after `backward()`")
            yield self.diagnostic(message, bwd or never.zero_grad,
                                  related=related(never.optimizer.location, f"`{opt}` is created here"),
                                  fix=display_fix(f"Call `{opt}.step()` after `backward()`"),
                                  optimizer=opt, kind="never_stepped")
