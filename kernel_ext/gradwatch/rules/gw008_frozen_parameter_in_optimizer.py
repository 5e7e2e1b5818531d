"""## What it does
Flags parameters with `requires_grad=False` (frozen) inside an optimizer: as a warning when
*all* of the optimizer's parameters are frozen, or when a parameter is *created* frozen
(`nn.Parameter(..., requires_grad=False)`) beside trainable parameters of the same module (a
LoRA adapter matrix made frozen by mistake; the warning points at its creation); as information
when only some are frozen otherwise (a frozen backbone is normal).

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

import re

from ..diagnostics import Location
from ..events import TensorFact
from .base import Context, Rule, Severity, all_names, display_fix, names, related, short_names, them


class FrozenParameterInOptimizer(Rule):
    code = "GW008"
    name = "frozen-parameter-in-optimizer"
    severity = Severity.WARNING
    summary = "Frozen parameters (`requires_grad=False`) are in an optimizer."

    def check(self, ctx: Context):
        seen: set[str] = set()
        for opt in ctx.events.optimizers + ctx.events.adopted_optimizers:
            if opt.error or not opt.params:
                continue
            frozen = [f.name for f in opt.params if f.kind == "parameter" and not f.requires_grad]
            if not frozen:
                continue
            if opt.name in seen:
                continue
            seen.add(opt.name or "")
            who = f"`{opt.name}`" if opt.name else "the optimizer"
            created_frozen = _created_frozen_beside_trainable(opt.params)
            for where, (names_here, siblings) in created_frozen.items():
                it = them(names_here)
                message = (f"{short_names(names_here)} {them(names_here, 'is', 'are')} created frozen "
                           f"(`requires_grad=False`)")
                help = (f"{them(names_here, 'It sits', 'They sit')} beside trainable {names(siblings)} "
                        f"of the same module, so {who} never updates {it}: create {it} trainable."
                        f"{all_names(names_here)}")
                yield self.diagnostic(
                    message, where, help=help,
                    related=related(opt.location, f"{who} is given the frozen parameters here"),
                    severity=Severity.WARNING,
                    fix=display_fix("Create the parameter with `requires_grad=True` (the default)"),
                    explains=names_here, frozen=names_here, n_params=len(opt.params))
            reported = {n for names_here, _ in created_frozen.values() for n in names_here}
            frozen = [n for n in frozen if n not in reported]
            if not frozen:
                continue
            everything = len(frozen) == len(opt.params)
            if everything:
                message = f"all {len(frozen)} parameters of {who} are frozen (`requires_grad=False`)"
                help = f"{who[0].upper()}{who[1:]} trains nothing: unfreeze the parameters you mean to train."
            else:
                message = (f"{short_names(frozen)} in {who} {them(frozen, 'is', 'are')} frozen "
                           f"(`requires_grad=False`)")
                help = (f"{them(frozen, 'It', 'They')} will never be updated: pass only trainable parameters "
                        f"(`filter(lambda p: p.requires_grad, ...)`).{all_names(frozen)}")
            # the line to edit is where they were frozen, when that was seen
            frozen_at = [f.frozen for f in opt.params if f.frozen is not None and f.name in frozen]
            where = frozen_at[0] if frozen_at else opt.location
            rel = related(opt.location, f"{who} is given the frozen parameters here") if frozen_at else []
            yield self.diagnostic(
                message, where, help=help, related=rel,
                severity=Severity.WARNING if everything else Severity.INFO,
                fix=display_fix("Pass only the parameters that require grad to the optimizer"),
                explains=frozen, frozen=frozen, n_params=len(opt.params))


def _created_frozen_beside_trainable(params: list[TensorFact]) -> dict[Location, tuple[list[str], list[str]]]:
    """Frozen parameters whose own creation froze them (`nn.Parameter(..., requires_grad=False)`)
    while a parameter of the same module is trainable, by creation site: (them, the trainable
    siblings)."""
    trainable_in: dict[str, list[str]] = {}
    for f in params:
        if f.requires_grad:
            trainable_in.setdefault(_module_of(f.name), []).append(f.name)
    found: dict[Location, tuple[list[str], list[str]]] = {}
    for f in params:
        if f.kind != "parameter" or f.requires_grad or f.created is None or f.frozen is not None:
            continue
        siblings = trainable_in.get(_module_of(f.name)) if "." in f.name else None  # a module's, not loose
        if siblings and _FROZEN_AT_CREATION.search(f.created.source):
            names_here, sibling_names = found.setdefault(f.created, ([], []))
            names_here.append(f.name)
            sibling_names.extend(s for s in siblings if s not in sibling_names)
    return found


_FROZEN_AT_CREATION = re.compile(r"Parameter\(.*requires_grad\s*=\s*False")


def _module_of(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""
