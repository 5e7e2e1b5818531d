"""## What it does
Flags `optimizer.zero_grad()` called between `loss.backward()` and `optimizer.step()`: the
step then finds no gradient. It points at the `zero_grad()`, with the `backward()` and `step()`
involved.

## Why is this bad?
`zero_grad()` sets every `.grad` to `None` (or to zeros), so it throws away the gradients that
`backward()` just computed. `step()` then skips every parameter (or, with momentum or weight
decay, moves them without any signal from the loss): the model does not learn.

## Example
```python
loss.backward()
optimizer.zero_grad()
optimizer.step()
```

## Use instead
```python
optimizer.zero_grad()
loss.backward()
optimizer.step()
```
"""

from __future__ import annotations

from ..measurements import ClearedUnusedGradients
from .base import Context, Rule, Severity, display_fix, related


class ZeroGradBeforeStep(Rule):
    code = "GW102"
    name = "zero-grad-before-step"
    severity = Severity.ERROR
    summary = "`zero_grad()` between `backward()` and `step()` throws the gradients away."

    def check(self, ctx: Context):
        for m in ctx.measured(ClearedUnusedGradients):
            if m.then != "step":
                continue
            opt = m.optimizer.name
            message = (f"`{opt}.zero_grad()` runs between `backward()` and `{opt}.step()`, so the "
                       f"step finds no gradient and the model does not learn; call "
                       f"`{opt}.zero_grad()` before `backward()` or after `step()`")
            rel = related(m.backward, "the gradients computed here are cleared") + \
                related(m.step, f"`{opt}.step()` finds no gradient here")
            yield self.diagnostic(message, m.zero_grad or m.step, related=rel,
                                  fix=display_fix("Move `zero_grad()` before `backward()`"),
                                  optimizer=opt)
