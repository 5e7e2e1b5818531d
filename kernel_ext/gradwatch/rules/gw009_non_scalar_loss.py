"""## What it does
Explains *grad can be implicitly created only for scalar outputs*: it points at the line that
computed the non-scalar loss and says how to reduce it.

## Why is this bad?
`loss.backward()` without an argument needs a single number. A per-sample loss (a missing
`.mean()`, `reduction="none"`) has a shape, and `backward()` fails at a line that is not
where the mistake is.

## Example
```python
loss = (model(x) - y) ** 2
loss.backward()
```

## Use instead
```python
loss = ((model(x) - y) ** 2).mean()
loss.backward()
```
"""

from __future__ import annotations

from .base import Applicability, Context, Edit, Fix, Rule, Severity, related


class NonScalarLoss(Rule):
    code = "GW009"
    name = "non-scalar-loss"
    severity = Severity.ERROR
    summary = "`backward()` on a loss that is not a scalar."

    def check(self, ctx: Context):
        for event in ctx.events.backwards:
            info = event.explain
            if info.get("kind") != "non_scalar":
                continue
            name = info.get("loss_name") or "the loss"
            # the line to edit is the loss built to return per-element values, when there is one
            unreduced = info.get("unreduced_location")
            loc = unreduced or info.get("loss_location") or event.location
            shape = tuple(info.get("loss_shape") or ())
            message = f"`{name}` has shape {shape}, not a single number"
            help = "`backward()` cannot start from it: reduce it with `.mean()` (or `.sum()`) first."
            fix = None
            if loc is not None and loc is not event.location and loc.end_line == loc.line and loc.text:
                fix = Fix("Reduce the loss with `.mean()`", Applicability.UNSAFE,
                          (Edit(loc.at(loc.column), "("), Edit(loc.at(loc.end_column), ").mean()")))
            if unreduced is not None:
                help = (f"`{unreduced.text}` returns one loss per element, so `backward()` cannot start from "
                        f"it: reduce it with `.mean()` (or `.sum()`) first, or drop `reduction='none'`.")
                fix = None
            rel = related(info.get("loss_location") if unreduced is not None else None, f"`{name}` is computed here")
            rel += related(event.location, "backward() fails here")
            yield self.diagnostic(message, loc, help=help, related=rel,
                                  fix=fix, shape=list(shape))
