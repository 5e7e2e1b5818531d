"""## What it does
Flags a loss that grows tenfold or more from the first steps of a cell to the last (or to its
largest value before it became NaN/Inf).

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

from .base import Context, Rule, Severity, display_fix, related


class DivergingLoss(Rule):
    code = "GW113"
    name = "diverging-loss"
    severity = Severity.WARNING
    summary = "The loss grows by an order of magnitude or more over the steps."
    one_per_place = True

    def check(self, ctx: Context):
        for f in ctx.findings(self.code):
            loss = _loss_name(f.get("loss"))
            end = f"{f['peak']:.3g} before it became NaN/Inf" if f.get("nonfinite") else f"{f['last']:.3g}"
            opt = f.get("optimizer")
            fix = f"lower the learning rate of `{opt}`" if opt else "lower the learning rate"
            message = f"`{loss}` grew from {f['first']:.3g} to {end} instead of decreasing; {fix}"
            where, rel = f.get("loss"), related(f.get("optimizer_location"), "the learning rate is set here")
            data = ctx.unscaled_input()
            if data is not None:  # unscaled features make any usual learning rate too large
                message = (f"`{loss}` grew from {f['first']:.3g} to {end}: `{data.name}` holds values up to "
                           f"{data.max_abs:,.3g}, so the gradient steps overshoot; standardize it "
                           f"(subtract the mean, divide by the std) or {fix}")
                rel = related(f.get("loss"), f"`{loss}` diverges here") + rel
                where = data.created
            elif ctx.source_map is not None and (summed := ctx.source_map.find_summed_loss()) is not None:
                # a summed loss grows with the batch: the step size the learning rate was tuned for
                # is multiplied by the batch size
                message = (f"`{loss}` grew from {f['first']:.3g} to {end}: `{summed.text}` sums over the "
                           f"batch, so the gradient (and every step) is batch-size times larger; use "
                           f"`reduction='mean'` or {fix}")
                rel = related(f.get("loss"), f"`{loss}` diverges here") + rel
                where = summed
            yield self.diagnostic(message, where, related=rel,
                                  fix=display_fix("Lower the learning rate"), first=f["first"], last=f["last"])


def _loss_name(loc) -> str:
    text = loc.text if loc is not None else ""
    return text[: -len(".backward()")] if text.endswith(".backward()") else "the loss"
