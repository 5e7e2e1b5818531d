"""## What it does
Explains *a leaf Variable that requires grad is being used in an in-place operation* (and its
variant for a view of such a leaf): it points at the in-place update and says how to make it.

## Why is this bad?
Autograd refuses to modify a tensor it tracks as a trainable leaf while gradient tracking is
on, because the modification itself would become part of the graph. The update of a parameter
(`w -= lr * w.grad`, `p.add_(...)`, `w[0] = ...`) must run without tracking.

## Example
```python
loss.backward()
w -= lr * w.grad
```

## Use instead
```python
loss.backward()
with torch.no_grad():
    w -= lr * w.grad
```
Or use an optimizer, which updates parameters without tracking.
"""

from __future__ import annotations

from ..events import InplaceLeafEvent
from .base import Context, Rule, Severity, display_fix


class InplaceOnLeaf(Rule):
    code = "GW012"
    name = "inplace-on-leaf"
    severity = Severity.ERROR
    summary = "An in-place op on a leaf tensor that requires grad, with gradient tracking on."

    def check(self, ctx: Context):
        event = ctx.events.cell_failure
        if not isinstance(event, InplaceLeafEvent):
            return
        what = f"`{event.target}`" if event.target else "a tensor that requires grad"
        view = "a view of " if event.view else ""
        statement = event.location.text or event.location.source.strip()
        message = f"`{statement}` modifies {view}{what}, a leaf that requires grad, in place"
        help = ("Autograd refuses that while gradient tracking is on: do the update under "
                "`with torch.no_grad():` (or on a copy, out of place).")
        yield self.diagnostic(message, event.location, help=help,
                              fix=display_fix("Wrap the update in `with torch.no_grad():`"),
                              tensor=event.target, view=event.view)
