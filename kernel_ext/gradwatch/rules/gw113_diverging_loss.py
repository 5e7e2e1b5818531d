"""## What it does
Flags a loss that grows **10** times or more from the first steps of a cell (the mean of its
first 16 values) to the last (the mean of its latest finite values), or to its largest value
before it became NaN/Inf, once at least **20** losses were seen.

## Why is this bad?
Training should make the loss smaller. A loss that climbs means the updates overshoot: the
learning rate is too large, gradients accumulate without `zero_grad()`, or the sign of the
update is wrong (`p += lr * p.grad`).

## Example
```python
optimizer = torch.optim.SGD(model.parameters(), lr=10.0)
```

## Use instead
```python
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
```
"""

from __future__ import annotations

import math

from ..measurements import LossStatistics
from .base import Context, Rule, Severity, display_fix, related

MIN_GROWTH = 10  # latest (or peak) loss / first losses
MIN_STEPS = 20  # losses seen


class DivergingLoss(Rule):
    code = "GW113"
    name = "diverging-loss"
    severity = Severity.WARNING
    summary = "The loss grows by an order of magnitude or more over the steps."
    one_per_place = True
    blames_unscaled_data = True

    def check(self, ctx: Context):
        for losses in ctx.measured(LossStatistics):
            diverged = _diverged(losses)
            if diverged is None:
                continue
            first, last = diverged
            nonfinite = losses.first_nonfinite is not None
            loss = _loss_name(losses.loss)
            end = f"{losses.finite_max:.3g} before it became NaN/Inf" if nonfinite else f"{last:.3g}"
            opt = losses.optimizer.name
            fix = f"lower the learning rate of `{opt}`" if opt else "lower the learning rate"
            message = f"`{loss}` grew from {first:.3g} to {end} instead of decreasing"
            help = f"The steps overshoot: {fix}."
            where, rel = losses.loss, related(losses.optimizer.location, "the learning rate is set here")
            data = ctx.unscaled_input()
            if data is not None:  # unscaled features make any usual learning rate too large
                help = (f"`{data.name}` holds values up to {data.max_abs:,.3g}, so the gradient steps overshoot: "
                        f"standardize it (subtract the mean, divide by the std) or {fix}.")
                rel = related(losses.loss, f"`{loss}` diverges here") + rel
                where = data.created
            elif ctx.source_map is not None and (summed := ctx.source_map.find_summed_loss()) is not None:
                # a summed loss grows with the batch: the step size the learning rate was tuned for
                # is multiplied by the batch size
                help = (f"`{summed.text}` sums over the batch, so the gradient (and every step) is batch-size "
                        f"times larger: use `reduction='mean'` or {fix}.")
                rel = related(losses.loss, f"`{loss}` diverges here") + rel
                where = summed
            yield self.diagnostic(message, where, help=help, related=rel,
                                  fix=display_fix("Lower the learning rate"), first=first, last=last)


def _diverged(losses: LossStatistics) -> tuple[float, float | None] | None:
    """(first, latest) mean loss of a loss that grew ``MIN_GROWTH``-fold, else None."""
    if losses.count < MIN_STEPS:
        return None
    first = losses.first_mean
    finite_tail = [v for v in losses.tail if math.isfinite(v)]
    last = sum(finite_tail) / len(finite_tail) if finite_tail else None
    if first > 0 and ((last is not None and last >= MIN_GROWTH * first)
                      or (losses.first_nonfinite is not None and losses.finite_max >= MIN_GROWTH * first)):
        return first, last
    return None


def _loss_name(loc) -> str:
    text = loc.text if loc is not None else ""
    return text[: -len(".backward()")] if text.endswith(".backward()") else "the loss"
