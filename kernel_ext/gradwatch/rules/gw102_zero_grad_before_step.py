"""## What it does
Flags `optimizer.zero_grad()` called between `loss.backward()` and `optimizer.step()`: the
step then finds no gradient. It points at the `zero_grad()`, with the `backward()` and `step()`
involved. In a gradient-accumulation loop (several `backward()` calls per `step()`) it flags a
`zero_grad()` between the micro-batches' `backward()` calls, which leaves only the last
micro-batch's gradients to the step.

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
from .gw105_non_finite import became_non_finite


class ZeroGradBeforeStep(Rule):
    code = "GW102"
    name = "zero-grad-before-step"
    severity = Severity.ERROR
    summary = "`zero_grad()` between `backward()` and `step()` throws the gradients away."

    def check(self, ctx: Context):
        nonfinite = became_non_finite(ctx)
        for m in ctx.measured(ClearedUnusedGradients):
            if m.then == "backward":
                if clears_micro_batches(m) and not nonfinite and m.times >= m.optimizer.steps:
                    yield self._micro_batches(m)
                continue
            opt = m.optimizer.name
            message = f"`{opt}.zero_grad()` runs between `backward()` and `{opt}.step()`"
            help = (f"The step finds no gradient, so the model does not learn: call `{opt}.zero_grad()` "
                    f"before `backward()` or after `step()`.")
            rel = related(m.backward, "the gradients computed here are cleared") + \
                related(m.step, f"`{opt}.step()` finds no gradient here")
            yield self.diagnostic(message, m.zero_grad or m.step, help=help, related=rel,
                                  fix=display_fix("Move `zero_grad()` before `backward()`"),
                                  optimizer=opt)

    def _micro_batches(self, m: ClearedUnusedGradients):
        opt, bwd, zero_grad = m.optimizer.name, m.backward, m.zero_grad
        call = f"`{bwd.text}`" if bwd is not None and bwd.text else "`backward()`"
        message = (f"`{zero_grad.text if zero_grad and zero_grad.text else opt + '.zero_grad()'}` clears the "
                   f"gradients of {call} before `{opt}.step()` uses them ({m.times:,} times)")
        help = (f"Only the last micro-batch before each step counts: call `{opt}.zero_grad()` right after "
                f"`{opt}.step()` instead.")
        # a warning: the steps still learn from the last micro-batch
        return self.diagnostic(message, zero_grad, help=help, related=related(bwd, "these gradients are thrown away"),
                               fix=display_fix("Move `zero_grad()` right after `step()`"),
                               severity=Severity.WARNING, optimizer=opt, accumulation=True)


def clears_micro_batches(m: ClearedUnusedGradients) -> bool:
    """``zero_grad()`` cleared a backward's gradients in a loop that does step, every few
    backward() calls: gradient accumulation with the ``zero_grad()`` in the wrong place."""
    return m.then == "backward" and m.optimizer.steps >= 2 and m.zero_grad is not None
