"""## What it does
Explains *one of the variables needed for gradient computation has been modified by an
inplace operation*: it points at the in-place operation (`x += 1`, `x.relu_()`, `x[0] = 0`)
and, as related information, at the operation that saved the tensor for the backward pass.

## Why is this bad?
Autograd saves some inputs and outputs of an op to compute its gradient later. Modifying such a
tensor in place afterwards makes the saved value wrong, so `loss.backward()` raises, far from
the line that caused it.

## Example
```python
h = torch.sigmoid(x @ w)
h += 1
loss = h.sum()
```

## Use instead
```python
h = torch.sigmoid(x @ w)
h = h + 1
loss = h.sum()
```
"""

from __future__ import annotations

from .base import Context, Rule, Severity, display_fix, related


class InplaceModification(Rule):
    code = "GW005"
    name = "inplace-modification"
    severity = Severity.ERROR
    summary = "An in-place op modified a tensor that autograd saved for backward."

    def check(self, ctx: Context):
        for event in ctx.events.backwards:
            info = event.explain
            if info.get("kind") != "inplace":
                continue
            loc = info.get("inplace_location") or event.location
            tensor = f"`{info['tensor_name']}`" if info.get("tensor_name") else "a tensor"
            op = (f"`{loc.text}`" if loc is not None and loc.text and loc is not event.location
                  else "an in-place operation")
            saved = f"`{info['saved_op']}`" if info.get("saved_op") else "an earlier op"
            message = f"{op} modifies {tensor} in place after {saved} saved it for the backward pass"
            help = ("`backward()` needs the saved value, so it fails: use an out-of-place operation "
                    "(e.g. `x = x + 1` instead of `x += 1`).")
            if info.get("inplace_op") == "step":
                message = f"{op} updates {tensor} in place while an earlier graph still needs the old value"
                help = ("A graph built before this `step()` still needs the old value, so the later `backward()` "
                        "fails: call `backward()` for every loss that uses those parameters before this "
                        "`step()` (or recompute the forward).")
            rel = related(info.get("saved_location"), f"{saved} saves {tensor} for backward here")
            rel += related(event.location, "backward() fails here")
            yield self.diagnostic(message, loc, help=help, related=rel,
                                  fix=display_fix("Replace the in-place operation by its out-of-place form"),
                                  shape=info.get("shape"), version=info.get("version"),
                                  expected_version=info.get("expected_version"))
