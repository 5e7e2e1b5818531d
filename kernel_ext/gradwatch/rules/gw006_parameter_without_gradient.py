"""## What it does
Flags parameters of an optimizer that no `backward()` reached: at `optimizer.step()` their
`.grad` is still `None`. They are named by qualified name (`model.fc2.weight`), with the line
that built the optimizer.

## Why is this bad?
`step()` skips parameters without a gradient, so these parameters never change. Typical causes:
a layer defined in `__init__` but not used in `forward`, a branch of the model the loss does
not depend on, or a loss computed from the wrong tensor.

## Example
```python
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 1)
    def forward(self, x):
        return self.fc1(x).sum(dim=1)  # fc2 is never used
```

## Use instead
```python
    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))
```
If some parameters are unused on purpose, leave them out of the optimizer or silence the rule
for the cell with `%%gradwatch --ignore GW006`.
"""

from __future__ import annotations

from ..events import StepCounts
from .base import Context, Location, Rule, Severity, all_names, display_fix, names, related, short_names, them


class ParameterWithoutGradient(Rule):
    code = "GW006"
    name = "parameter-without-gradient"
    severity = Severity.WARNING
    summary = "An optimizer's parameters got no gradient from any `backward()`."
    # the last resort: any rule that names a cause for a missing gradient comes first
    defers_to = frozenset({"GW001", "GW002", "GW003", "GW004", "GW007", "GW008", "GW103", "GW108", "GW114"})

    def check(self, ctx: Context):
        reported: dict[int, list] = {}
        where: dict[int, tuple] = {}
        for step in ctx.events.steps:
            if step.backwards_since_step == 0:
                continue  # a step without backward is another rule's business
            for fact in step.without_grad:
                if not fact.requires_grad or fact.name in ctx.explained:
                    continue
                names_ = reported.setdefault(step.optimizer, [])
                if fact.name not in names_:
                    names_.append(fact.name)
                where.setdefault(step.optimizer, (fact, step))
        for key, missing in reported.items():
            fact, step = where[key]
            opt = f"`{step.name}`" if step.name else "the optimizer"
            opt_loc = fact.owner_locations[0] if fact.owner_locations else step.location
            # the line to edit is where the unused layer (or tensor) is defined, not the optimizer
            defined = _definition(ctx, missing, fact)
            loc = defined or opt_loc
            it = them(missing)
            message = f"{short_names(missing)} in {opt} got no gradient"
            help = (f"No `backward()` reached {it}, so `step()` never updates {it}: use {it} in the "
                    f"forward pass or leave {it} out of the optimizer.{all_names(missing)}")
            counts = ctx.events.step_counts.get(key) or StepCounts()
            if counts.checked == counts.steps > 1:
                message += f" (in {counts.missing:,} of {counts.steps:,} steps)"
            elif counts.checked < counts.steps:  # a long loop is checked on a sample of its steps
                message += (f" (in {counts.missing:,} of the {counts.checked:,} steps checked, "
                            f"out of {counts.steps:,})")
            rel = related(opt_loc, f"{names(missing, 2)} {'is' if len(missing) == 1 else 'are'} given to {opt} here") \
                if defined is not None else []
            rel += related(step.location, f"{opt}.step() finds no gradient here")
            yield self.diagnostic(
                message, loc, help=help, related=rel,
                fix=display_fix("Use the parameters in forward(), or exclude them from the optimizer"),
                explains=missing, parameters=missing, optimizer=step.name, n_params=step.n_params,
                steps=counts.steps, steps_checked=counts.checked, steps_without_gradient=counts.missing)


def _definition(ctx: Context, missing: list[str], fact) -> Location | None:
    """Where the parameters that get no gradient are defined: the submodule they all belong to
    (``self.layer2 = nn.Sequential(...)``), or the one plain tensor (``b2 = torch.zeros(...)``)."""
    parts = [name.split(".") for name in missing]
    common: list[str] = []
    for level in zip(*(p[:-1] for p in parts), strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    if not common:
        return fact.created if len(missing) == 1 and fact.kind == "tensor" else None
    if len(common) == 1 or ctx.source_map is None:
        return None  # the whole model: a cut, not an unused layer, is the likely cause
    for part in reversed(common[1:]):
        if part.isidentifier():
            found = ctx.source_map.find_assignment(part, attribute=True)
            if found is not None:
                return found
    return ctx.source_map.find_assignment(common[0]) if common[0].isidentifier() else None
