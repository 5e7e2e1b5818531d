"""## What it does
Flags `backward()` calls whose gradients no `optimizer.step()` ever uses: `zero_grad()` clears
them before any step, or the cell's optimizer is never stepped at all. GradScaler steps that
skip an update on purpose count as steps.

## Why is this bad?
The backward pass is the most expensive part of a training step; when its gradients are thrown
away the parameters never change. Typical causes: `optimizer.step()` forgotten, indented
outside the loop, or behind a condition that is never true.

## Example
```python
for x, y in loader:
    optimizer.zero_grad()
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

from .base import Context, Rule, Severity, display_fix, related


class UnusedBackward(Rule):
    code = "GW104"
    name = "unused-backward"
    severity = Severity.WARNING
    summary = "`backward()` computes gradients that no `optimizer.step()` uses."

    def check(self, ctx: Context):
        found = ctx.events.extra.get("dynamics", ())
        nonfinite = any(f["code"] == "GW105" and f.get("kind") != "singular" for f in found)
        for f in found:
            if f["code"] != self.code:
                continue
            if f.get("kind") == "discarded" and (nonfinite or f.get("steps", 0) > f.get("discards", 0)):
                # steps skipped on purpose (a NaN guard) in a loop that mostly steps
                continue
            opt, bwd = f["optimizer"], f.get("backward")
            call = f"`{bwd.text}`" if bwd is not None and bwd.text else "`backward()`"
            if f.get("kind") != "discarded" and ctx.events.cell_error is not None:
                continue  # the cell raised before it could reach `step()`: nothing to judge
            where = bwd or f.get("zero_grad")
            if f.get("kind") == "discarded" and f.get("steps", 0) >= 2 and f.get("zero_grad") is not None:
                # the loop does step, every few backward() calls (gradient accumulation), but a
                # zero_grad() between them throws the earlier micro-batches away: that is the line
                zg = f["zero_grad"]
                message = (f"`{zg.text or opt + '.zero_grad()'}` clears the gradients of {call} before "
                           f"`{opt}.step()` uses them ({f.get('discards', 0):,} times), so only the last "
                           f"micro-batch before each step counts; call `{opt}.zero_grad()` right after "
                           f"`{opt}.step()` instead")
                rel = related(bwd, "these gradients are thrown away")
                where = zg
            elif f.get("kind") == "discarded":
                message = (f"the gradients of {call} are cleared by `{opt}.zero_grad()` before any "
                           f"`{opt}.step()` uses them; call `{opt}.step()` after every `backward()`")
                rel = related(f.get("zero_grad"), "the gradients are cleared here, unused")
            else:
                message = (f"the gradients of {call} are never used because `{opt}.step()` is never "
                           f"called; call `{opt}.step()` after `backward()`")
                rel = related(f.get("optimizer_location"), f"`{opt}` is created here")
            yield self.diagnostic(message, where, related=rel,
                                  fix=display_fix(f"Call `{opt}.step()` after `backward()`"),
                                  optimizer=opt, kind=f.get("kind"))
