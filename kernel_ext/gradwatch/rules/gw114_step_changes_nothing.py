"""## What it does
Flags optimizer steps that cannot change any parameter: every parameter group has learning
rate 0 (still at the last step checked: a warm-up schedule that starts at 0 and rises is
fine), or every gradient was exactly zero in every measured step of the cell, at least **8**
of them.

## Why is this bad?
The loop runs, the loss is computed, but the model stays as it was. A learning rate of 0 often
comes from a scheduler or a typo (`lr=0e-3`); all-zero gradients from a loss that does not
depend on the parameters in a differentiable way (a constant, or `argmax`/comparison outputs).

## Example
```python
optimizer = torch.optim.SGD(model.parameters(), lr=0)
```

## Use instead
```python
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
```
"""

from __future__ import annotations

from ..measurements import ClearedUnusedGradients, GradientStatistics, LearningRateZero, StepWithoutBackward
from .base import Context, Rule, Severity, display_fix, related

MIN_SAMPLED_STEPS = 8  # measured steps, all with exactly zero gradients


class StepChangesNothing(Rule):
    code = "GW114"
    name = "step-changes-nothing"
    severity = Severity.WARNING
    summary = "Optimizer steps that change nothing: learning rate 0 or all-zero gradients."
    defers_to = frozenset({"GW001", "GW002", "GW003", "GW004", "GW007", "GW008", "GW103", "GW108"})

    def check(self, ctx: Context):
        # zeros that zero_grad() between backward() and step() (GW102) or a step without
        # backward (GW103) left behind are those rules' findings
        caused = {m.optimizer.key for m in ctx.measured(ClearedUnusedGradients) if m.then == "step"} | \
            {m.optimizer.key for m in ctx.measured(StepWithoutBackward)}
        done: set[str] = set()
        found: list[LearningRateZero | GradientStatistics] = [
            m for m in ctx.events.measurements
            if (isinstance(m, LearningRateZero) and m.at_last_check)
            or (isinstance(m, GradientStatistics) and m.optimizer.key not in caused and all_gradients_zero(m))]
        for m in found:
            opt = m.optimizer.name
            if isinstance(m, LearningRateZero):
                params, kind = m.params, "lr"
                message = f"`{opt}` has learning rate 0, so `{opt}.step()` changes no parameter"
                help = "The model does not learn: set a positive `lr`."
                loc = m.optimizer.location or m.step
                rel = related(m.step, f"`{opt}.step()` changes nothing here")
            else:
                params, kind = m.params[:16], "zero_grads"
                if any(p in ctx.explained | done for p in params):
                    continue  # a structural rule (e.g. GW003) gave the cause
                message = f"every gradient of `{opt}`'s parameters was exactly zero in all {m.optimizer.steps} steps"
                help = f"`{opt}.step()` changes nothing: make the loss depend differentiably on the parameters."
                loc = m.loss or m.optimizer.location
                rel = related(m.optimizer.location, f"`{opt}` is created here")
            done.update(params)
            yield self.diagnostic(message, loc, help=help, related=rel,
                                  fix=display_fix("Use a positive learning rate / a differentiable loss"),
                                  explains=params, optimizer=opt, kind=kind)


def all_gradients_zero(g: GradientStatistics) -> bool:
    """Every gradient was exactly zero (or missing) in every measured step."""
    return g.sampled_steps >= MIN_SAMPLED_STEPS and g.all_zero_rows >= g.sampled_steps \
        and not any(g.ever_nonzero)


def lr_zero_at_end(ctx: Context) -> set[int]:
    """The keys of the optimizers whose learning rate was 0 at their last step checked."""
    return {m.optimizer.key for m in ctx.measured(LearningRateZero) if m.at_last_check}
