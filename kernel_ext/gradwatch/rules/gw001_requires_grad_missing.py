"""## What it does
Flags a tensor that the code trains — it is given to an optimizer, or its `.grad` is used —
but that was created without `requires_grad=True`. gradwatch points at the expression that
created it, also when that was in an earlier cell.

## Why is this bad?
Autograd only tracks tensors that require gradients. A plain `torch.randn(1, 1)` is a
constant to it: `loss.backward()` either fails with *element 0 of tensors does not require
grad and does not have a grad_fn* (when nothing in the loss requires grad) or silently leaves
`w.grad` as `None`, and `optimizer.step()` never changes `w`. The model does not learn.

## Example
```python
w = torch.randn(1, 1)
b = torch.randn(1, 1)
optimizer = torch.optim.SGD([w, b], lr=0.01)
```

## Use instead
```python
w = torch.randn(1, 1, requires_grad=True)
b = torch.randn(1, 1, requires_grad=True)
optimizer = torch.optim.SGD([w, b], lr=0.01)
```
Or use `torch.nn.Parameter(...)` / an `nn.Module`, whose parameters require grad by default.
"""

from __future__ import annotations

import re

from .base import Applicability, Context, Rule, Severity, insert_fix, related

# Factories that take a requires_grad= keyword (so the fix can add it in place).
_FACTORY = re.compile(
    r"^(torch\.)?(randn|rand|zeros|ones|empty|full|tensor|eye|linspace|logspace|arange|normal"
    r"|randn_like|rand_like|zeros_like|ones_like|empty_like|full_like)\(.*\)$", re.S)


class RequiresGradMissing(Rule):
    code = "GW001"
    name = "requires-grad-missing"
    severity = Severity.ERROR
    summary = "A trained tensor was created without `requires_grad=True`."

    def check(self, ctx: Context):
        facts = {}
        for event, flow in ctx.flows():
            for fact in flow.unreached:
                if fact.name in flow.direct or fact.owners:
                    facts.setdefault(fact.name, (fact, event.location, flow.loss_name))
        reached = {n for _, flow in ctx.flows() for n in flow.reached}
        later = [step.without_grad for step in ctx.events.steps] + \
                [opt.params for opt in ctx.events.optimizers]
        for params in later:
            for fact in params:
                if fact.name not in reached:
                    facts.setdefault(fact.name, (fact, ctx.backward_location(), None))
        if not facts:
            yield from self._nothing_requires_grad(ctx)
        for name, (fact, backward_at, loss_name) in facts.items():
            if fact.kind != "tensor" or fact.requires_grad or not fact.is_leaf:
                continue
            loc = fact.created
            owner = f"`{fact.owners[0]}`" if fact.owners else "the training loop"
            message = f"`{name}` is created without `requires_grad=True`"
            help = (f"No gradient can reach it, so {owner} never updates it: create it with "
                    f"`requires_grad=True`.")
            rel = []
            locs = list(fact.owner_locations)
            if len(locs) != len(fact.owners):  # owner_locations leaves out optimizers without one
                where = {o.key: o.location for o in ctx.events.optimizers}
                locs = [where.get(key) for key in fact.owner_keys]
            for owner_name, owner_loc in zip(fact.owners, locs, strict=True):
                rel += related(owner_loc, f"`{name}` is given to `{owner_name}` here")
            rel += related(backward_at, f"`{loss_name or 'the loss'}.backward()` needs its gradient here")
            yield self.diagnostic(message, loc, help=help, related=rel, fix=_fix(loc), explains=[name], tensor=name,
                                  shape=list(fact.shape), optimizers=fact.owners)


    def _nothing_requires_grad(self, ctx: Context):
        """`backward()` failed and nothing the loss was computed from is trained anywhere (no
        optimizer, no `.grad` read): the tensor the loss was computed from is the candidate."""
        for event in ctx.events.backwards:
            info, flow = event.explain, event.flow
            if info.get("kind") != "no_grad_fn" or info.get("constant_location") is None or \
                    (flow is not None and (flow.cuts or flow.unreached)):
                continue
            loc, name = info["constant_location"], info.get("constant_name") or "the input"
            message = f"`{name}` is created without `requires_grad=True`, so the loss has no gradient history"
            help = (f"The loss is computed only from tensors without gradient history, so `backward()` has "
                    f"nothing to differentiate: create `{name}` with `requires_grad=True` (or compute it with "
                    f"a module whose parameters do).")
            yield self.diagnostic(message, loc, help=help, related=related(event.location, "backward() fails here"),
                                  fix=_fix(loc), explains=[name], tensor=name)
            return


def _fix(loc):
    if loc is None or loc.end_line != loc.line:
        return None
    text = loc.text
    if _FACTORY.match(text):
        inside = text[text.index("(") + 1 : -1].strip()
        return insert_fix("Add `requires_grad=True`", loc, loc.end_column - 1,
                          ", requires_grad=True" if inside else "requires_grad=True")
    return insert_fix("Call `.requires_grad_()` on it", loc, loc.end_column, ".requires_grad_()",
                      Applicability.SAFE)
