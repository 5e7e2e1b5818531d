"""## What it does
Tracks the global and per-parameter gradient norms over the steps of a cell and flags
gradients that grow by orders of magnitude (a thousandfold or more from the first steps to the
last), naming the parameters that grew fastest.

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

from .base import Context, Rule, Severity, display_fix, names, related


class ExplodingGradient(Rule):
    code = "GW106"
    name = "exploding-gradient"
    severity = Severity.WARNING
    summary = "Gradient norms grow by orders of magnitude over the steps."
    one_per_place = True

    def check(self, ctx: Context):
        for f in ctx.findings(self.code):
            opt = f["optimizer"]
            fastest = f" (fastest in {names(f['params'], 3)})" if f.get("params") else ""
            message = (f"the gradient norm of `{opt}`'s parameters grew {f['growth']:.0e}-fold over "
                       f"{f['steps']} steps, from {f['first']:.3g} to {f['last']:.3g}{fastest}; lower "
                       f"the learning rate or clip with `torch.nn.utils.clip_grad_norm_`")
            yield self.diagnostic(
                message, f.get("loss") or f.get("optimizer_location"),
                related=related(f.get("optimizer_location"), f"`{opt}` and its learning rate are set here"),
                fix=display_fix("Lower the learning rate or clip the gradient norm"),
                growth=f["growth"], parameters=f.get("params", []), optimizer=opt)
