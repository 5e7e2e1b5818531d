"""## What it does
Tracks the global and per-parameter gradient norms over the steps of a cell and flags
gradients that grow by orders of magnitude: a mean global norm over the latest steps **100**
times or more that of the first steps, once at least **32** steps were measured. It names the
parameters whose own norm grew at least **10** times, fastest first.

## Why is this bad?
Exploding gradients make each update larger than the last; the loss oscillates, then overflows
to Inf/NaN. Causes: a learning rate that is too large, deep or recurrent networks without
normalization, or a loss whose scale grows with the data.

## Example
```python
optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
for x, y in loader:
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    optimizer.step()
```

## Use instead
```python
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for x, y in loader:
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()
```
"""

from __future__ import annotations

import math

from ..measurements import GradientStatistics
from .base import Context, Rule, Severity, display_fix, names, related

MIN_GROWTH = 100  # latest / first mean global gradient norm
MIN_SAMPLED_STEPS = 32
MIN_PARAMETER_GROWTH = 10  # a parameter named as growing fast


class ExplodingGradient(Rule):
    code = "GW106"
    name = "exploding-gradient"
    severity = Severity.WARNING
    summary = "Gradient norms grow by orders of magnitude over the steps."
    one_per_place = True

    def check(self, ctx: Context):
        for g in ctx.measured(GradientStatistics):
            if g.sampled_steps < MIN_SAMPLED_STEPS or not g.first_global > 0 \
                    or not math.isfinite(g.last_global):
                continue
            growth = g.last_global / g.first_global
            if growth < MIN_GROWTH:
                continue
            grown = sorted(((last / first, name) for first, last, name in
                            zip(g.first_mean, g.last_mean, g.params, strict=False) if first > 0), reverse=True)
            params = [name for ratio, name in grown if ratio >= MIN_PARAMETER_GROWTH][:16]
            opt = g.optimizer.name
            fastest = f" (fastest in {names(params, 3)})" if params else ""
            message = (f"the gradient norm of `{opt}`'s parameters grew {growth:.0e}-fold over "
                       f"{g.optimizer.steps} steps")
            help = (f"It grew from {g.first_global:.3g} to {g.last_global:.3g}{fastest}: lower the learning rate "
                    f"or clip with `torch.nn.utils.clip_grad_norm_`.")
            yield self.diagnostic(
                message, g.loss or g.optimizer.location, help=help,
                related=related(g.optimizer.location, f"`{opt}` and its learning rate are set here"),
                fix=display_fix("Lower the learning rate or clip the gradient norm"),
                growth=growth, parameters=params, optimizer=opt)
