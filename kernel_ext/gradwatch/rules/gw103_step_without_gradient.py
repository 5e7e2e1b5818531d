"""## What it does
Flags `optimizer.step()` called with no `backward()` since the previous step: it either finds
no gradient at all or reuses the gradients the previous step already applied. A `step(closure)`
whose closure calls `backward()` (LBFGS) is fine.

## Why is this bad?
Without a fresh `backward()` the step has nothing new to apply: either nothing changes (no
`.grad`), or the same stale update is applied again and again. Usually `loss.backward()` was
forgotten, or is in the wrong branch or loop.

## Example
```python
for x, y in loader:
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
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

from ..measurements import StepWithoutBackward
from .base import Context, Rule, Severity, display_fix, related


class StepWithoutGradient(Rule):
    code = "GW103"
    name = "step-without-gradient"
    severity = Severity.ERROR
    summary = "`optimizer.step()` runs with no `backward()` since the previous step."

    def check(self, ctx: Context):
        for m in ctx.measured(StepWithoutBackward):
            opt = m.optimizer.name
            what = ("finds no gradient and changes nothing" if m.no_gradient
                    else "applies the previous step's stale gradients again")
            message = f"`{opt}.step()` runs without a `backward()` since the previous step"
            help = f"It {what}: call `loss.backward()` before `{opt}.step()`."
            yield self.diagnostic(message, m.step, help=help,
                                  related=related(m.optimizer.location, f"`{opt}` is created here"),
                                  fix=display_fix("Call `loss.backward()` before `step()`"),
                                  explains=m.params, optimizer=opt)
