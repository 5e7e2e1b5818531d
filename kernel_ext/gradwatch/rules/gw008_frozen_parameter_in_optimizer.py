"""## What it does
Flags parameters with `requires_grad=False` (frozen) inside an optimizer: as a warning when
*all* of the optimizer's parameters are frozen, as information when only some are.

## Why is this bad?
A frozen parameter never gets a gradient, so the optimizer never changes it. An optimizer whose
parameters are all frozen trains nothing — often a freezing loop that was meant for the
backbone only (`for p in model.parameters(): p.requires_grad = False`). Frozen parameters in a
partly frozen model are harmless but cost optimizer state and hide intent.

## Example
```python
for p in model.parameters():
    p.requires_grad = False
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
```

## Use instead
```python
for p in model.backbone.parameters():
    p.requires_grad = False
optimizer = torch.optim.SGD(model.head.parameters(), lr=0.1)
```
"""

from __future__ import annotations

from .base import Context, Rule, Severity, display_fix, names, related


class FrozenParameterInOptimizer(Rule):
    code = "GW008"
    name = "frozen-parameter-in-optimizer"
    severity = Severity.WARNING
    summary = "Frozen parameters (`requires_grad=False`) are in an optimizer."

    def check(self, ctx: Context):
        seen: set[str] = set()
        for opt in ctx.events.optimizers:
            if opt.error or not opt.params:
                continue
            frozen = [f.name for f in opt.params if f.kind == "parameter" and not f.requires_grad]
            if not frozen:
                continue
            if opt.name in seen:
                continue
            seen.add(opt.name or "")
            everything = len(frozen) == len(opt.params)
            who = f"`{opt.name}`" if opt.name else "the optimizer"
            if everything:
                message = (f"all {len(frozen)} parameters of {who} are frozen "
                           f"(`requires_grad=False`), so it trains nothing; unfreeze the "
                           f"parameters you mean to train")
            else:
                message = (f"{names(frozen)} in {who} {'is' if len(frozen) == 1 else 'are'} frozen "
                           f"(`requires_grad=False`) and will never be updated; pass only "
                           f"trainable parameters (`filter(lambda p: p.requires_grad, ...)`)")
            # the line to edit is where they were frozen, when that was seen
            frozen_at = [f.frozen for f in opt.params if f.frozen is not None and f.name in frozen]
            where = frozen_at[0] if frozen_at else opt.location
            rel = related(opt.location, f"{who} is given the frozen parameters here") if frozen_at else []
            yield self.diagnostic(
                message, where, related=rel,
                severity=Severity.WARNING if everything else Severity.INFO,
                fix=display_fix("Pass only the parameters that require grad to the optimizer"),
                explains=frozen, frozen=frozen, n_params=len(opt.params))
