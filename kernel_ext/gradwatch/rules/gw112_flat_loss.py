"""## What it does
Flags a loss that did not move over a cell of at least **50** steps — all values within
**1e-5** (a hundred-thousandth) of their mean, a mean of at least **1e-6** in size, never
NaN/Inf — although the gradients are not zero (and the learning rate is not 0, which GW114
reports).

## Why is this bad?
If the gradients are there but the loss stays put, the updates are too small to matter: the
learning rate is far too low (`1e-9` instead of `1e-3`), or the optimizer updates tensors that
the loss does not use.

## Example
```python
optimizer = torch.optim.SGD(model.parameters(), lr=1e-9)
```

## Use instead
```python
optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
```
"""

from __future__ import annotations

from ..measurements import GradientStatistics, LossStatistics
from .base import Context, Rule, Severity, display_fix, related
from .gw114_step_changes_nothing import all_gradients_zero, lr_zero_at_end

MIN_STEPS = 50  # losses seen
MAX_SPREAD = 1e-5  # (largest - smallest loss) / |mean loss|
MIN_MEAN = 1e-6  # |mean loss|: a loss that is ~0 has converged


class FlatLoss(Rule):
    code = "GW112"
    name = "flat-loss"
    severity = Severity.WARNING
    summary = "The loss does not move over many steps although gradients are non-zero."
    one_per_place = True
    blames_unscaled_data = True

    def check(self, ctx: Context):
        grads = {g.optimizer.key: g for g in ctx.measured(GradientStatistics)}
        lr_zero = lr_zero_at_end(ctx)
        for losses in ctx.measured(LossStatistics):
            key, g = losses.optimizer.key, grads.get(losses.optimizer.key)
            if key in lr_zero or (g is not None and all_gradients_zero(g)):
                continue  # steps that change nothing: GW114
            flat = _flat(losses, g)
            if flat is None:
                continue
            mean, spread = flat
            loss = _loss_name(losses.loss)
            opt = losses.optimizer.name
            fix = f"increase the learning rate of `{opt}`" if opt else "increase the learning rate"
            where = f"at {mean:.6g}" if spread == 0 else f"within {spread:.2g} of {mean:.6g}"
            n = losses.count
            message = f"`{loss}` stayed {where} over {n} steps although the gradients are not zero"
            help = f"The model is not learning: {fix}."
            where_, rel = losses.loss, related(losses.optimizer.location, "the learning rate is set here")
            data = ctx.unscaled_input(threshold=1e3, targets_first=True)
            if data is not None:  # targets or features far from unit scale: the steps are far too small
                message = f"`{loss}` stayed {where} over {n} steps"
                help = (f"`{data.name}` holds values up to {data.max_abs:,.3g}, far from the unit scale the model's "
                        f"outputs and steps have: standardize it (and undo that for predictions).")
                rel = related(losses.loss, f"`{loss}` stays flat here") + rel
                where_ = data.created
            yield self.diagnostic(message, where_, help=help, related=rel,
                                  fix=display_fix("Increase the learning rate"), mean=mean, n=n)


def _flat(losses: LossStatistics, g: GradientStatistics | None) -> tuple[float, float] | None:
    """(mean, spread) of a loss that stayed put although gradients flowed, else None."""
    if losses.count < MIN_STEPS or losses.first_nonfinite is not None or losses.finite_count <= 0:
        return None
    mean = losses.finite_sum / losses.finite_count
    spread = losses.finite_max - losses.finite_min
    moving = g is None or any(g.ever_nonzero)
    if abs(mean) > MIN_MEAN and spread <= MAX_SPREAD * abs(mean) and moving:
        return mean, spread
    return None


def _loss_name(loc) -> str:
    text = loc.text if loc is not None else ""
    return text[: -len(".backward()")] if text.endswith(".backward()") else "the loss"
