"""## What it does
Flags optimizer steps that cannot change any parameter: every parameter group has learning
rate 0, or every gradient was exactly zero in every step of the cell.

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

from .base import Context, Rule, Severity, display_fix, related


class StepChangesNothing(Rule):
    code = "GW114"
    name = "step-changes-nothing"
    severity = Severity.WARNING
    summary = "Optimizer steps that change nothing: learning rate 0 or all-zero gradients."
    defers_to = frozenset({"GW001", "GW002", "GW003", "GW004", "GW007", "GW008", "GW103", "GW108"})

    def check(self, ctx: Context):
        found = ctx.events.extra.get("dynamics", ())
        # zeros that zero_grad() between backward() and step() (GW102) or a step without
        # backward (GW103) left behind are those rules' findings
        caused = {f["optimizer_key"] for f in found if f["code"] in ("GW102", "GW103")}
        done: set[str] = set()
        for f in found:
            if f["code"] != self.code or (f.get("kind") != "lr" and f["optimizer_key"] in caused):
                continue
            opt = f["optimizer"]
            if f.get("kind") == "lr":
                message = (f"`{opt}` has learning rate 0, so `{opt}.step()` changes no parameter; set a "
                           f"positive `lr`")
                loc = f.get("optimizer_location") or f.get("step")
                rel = related(f.get("step"), f"`{opt}.step()` changes nothing here")
            else:
                if any(p in ctx.explained | done for p in f.get("params", ())):
                    continue  # a structural rule (e.g. GW003) gave the cause
                message = (f"every gradient of `{opt}`'s parameters was exactly zero in all "
                           f"{f['steps']} steps, so `{opt}.step()` changes nothing; make the loss "
                           f"depend differentiably on the parameters")
                loc = f.get("loss") or f.get("optimizer_location")
                rel = related(f.get("optimizer_location"), f"`{opt}` is created here")
            done.update(f.get("params", ()))
            yield self.diagnostic(message, loc, related=rel,
                                  fix=display_fix("Use a positive learning rate / a differentiable loss"),
                                  explains=f.get("params", ()), optimizer=opt, kind=f.get("kind"))
