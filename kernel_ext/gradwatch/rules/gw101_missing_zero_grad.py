"""## What it does
Flags a training loop whose gradients are never cleared between optimizer steps: a
`backward()` adds its gradients to the ones the previous `optimizer.step()` already used. It
points at that `backward()`, with the `step()` (and any `zero_grad()`) involved. Deliberate
gradient accumulation — several `backward()` calls, then one `step()` and one `zero_grad()` —
is not flagged.

## Why is this bad?
PyTorch accumulates into `.grad`: every `backward()` adds to what is there. Without
`optimizer.zero_grad()` (or `model.zero_grad()`, or `p.grad = None`) each step uses the sum of
all gradients so far, so the effective step grows without bound and training oscillates or
diverges.

## Example
```python
for x, y in loader:
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
```

## Use instead
```python
for x, y in loader:
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
```
"""

from __future__ import annotations

from ..measurements import AccumulatedIntoUsedGradient
from .base import Applicability, Context, Edit, Fix, Rule, Severity, related


class MissingZeroGrad(Rule):
    code = "GW101"
    name = "missing-zero-grad"
    severity = Severity.WARNING
    summary = "Gradients accumulate across optimizer steps: nothing calls `zero_grad()`."

    def check(self, ctx: Context):
        for m in ctx.measured(AccumulatedIntoUsedGradient):
            opt, bwd = m.optimizer.name, m.backward
            call = f"`{bwd.text}`" if bwd is not None and bwd.text else "`backward()`"
            message = f"{call} adds to the gradients that `{opt}.step()` already used"
            help = (f"Nothing clears them between steps, so each step applies the sum of all earlier "
                    f"gradients: call `{opt}.zero_grad()` before `backward()`.")
            rel = related(m.step, f"`{opt}.step()` uses the accumulated gradients here")
            if m.zero_grad is not None:
                rel += related(m.zero_grad, f"`{opt}.zero_grad()` is called only here, not "
                                            "between the steps")
            yield self.diagnostic(message, bwd, help=help, related=rel, fix=_fix(bwd, opt),
                                  optimizer=opt, step=m.step_index)


def _fix(loc, opt: str):
    if loc is None:
        return None
    indent = len(loc.source) - len(loc.source.lstrip())
    if loc.column != indent + 1 and not loc.source.lstrip().startswith(loc.text):
        return None
    ws = loc.source[:indent]
    return Fix(f"Call `{opt}.zero_grad()` before `backward()`", Applicability.UNSAFE,
               (Edit(loc.at(indent + 1), f"{opt}.zero_grad()\n{ws}"),))
