"""## What it does
Flags a loss that did not move over a cell of at least 50 steps — all values within a
hundred-thousandth of their mean — although the gradients are not zero.

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

from .base import Context, Rule, Severity, display_fix, related


class FlatLoss(Rule):
    code = "GW112"
    name = "flat-loss"
    severity = Severity.WARNING
    summary = "The loss does not move over many steps although gradients are non-zero."
    one_per_place = True

    def check(self, ctx: Context):
        found = ctx.events.extra.get("dynamics", ())
        nothing = {f["optimizer_key"] for f in found if f["code"] == "GW114"}
        for f in found:
            if f["code"] != self.code or f["optimizer_key"] in nothing:
                continue
            loss = _loss_name(f.get("loss"))
            opt = f.get("optimizer")
            fix = f"increase the learning rate of `{opt}`" if opt else "increase the learning rate"
            where = f"at {f['mean']:.6g}" if f["spread"] == 0 else f"within {f['spread']:.2g} of {f['mean']:.6g}"
            message = (f"`{loss}` stayed {where} over {f['n']} steps "
                       f"although the gradients are not zero, so the model is not learning; {fix}")
            where_, rel = f.get("loss"), related(f.get("optimizer_location"), "the learning rate is set here")
            data = ctx.unscaled_input(threshold=1e3, targets_first=True)
            if data is not None:  # targets or features far from unit scale: the steps are far too small
                message = (f"`{loss}` stayed {where} over {f['n']} steps: `{data.name}` holds values up to "
                           f"{data.max_abs:,.3g}, far from the unit scale the model's outputs and steps have; "
                           f"standardize it (and undo that for predictions)")
                rel = related(f.get("loss"), f"`{loss}` stays flat here") + rel
                where_ = data.created
            yield self.diagnostic(message, where_, related=rel,
                                  fix=display_fix("Increase the learning rate"), mean=f["mean"], n=f["n"])


def _loss_name(loc) -> str:
    text = loc.text if loc is not None else ""
    return text[: -len(".backward()")] if text.endswith(".backward()") else "the loss"
