"""## What it does
Flags a tensor that is trained (given to an optimizer, or its `.grad` is read) but is not a
leaf of the autograd graph, because an operation was applied to it after it was created with
`requires_grad=True`: `torch.randn(3, requires_grad=True).to(device)`, `... * 0.01`,
`.double()`. gradwatch points at the operation that made it a non-leaf.

## Why is this bad?
Only leaf tensors accumulate `.grad`. The optimizer refuses the tensor (*ValueError: can't
optimize a non-leaf Tensor*), or `w.grad` is silently `None` (PyTorch only warns that *the
.grad attribute of a Tensor that is not a leaf Tensor is being accessed*), and a manual update
`w -= lr * w.grad` fails.

## Example
```python
w = torch.randn(3, 1, requires_grad=True).to(device)
b = torch.zeros(1, requires_grad=True) * 0.01
```

## Use instead
```python
w = torch.randn(3, 1, device=device, requires_grad=True)
b = (torch.zeros(1) * 0.01).requires_grad_()
```
"""

from __future__ import annotations

from .base import Context, Rule, Severity, display_fix, related


class NonLeafParameter(Rule):
    code = "GW004"
    name = "non-leaf-parameter"
    severity = Severity.ERROR
    summary = "A trained tensor is not a leaf (e.g. `torch.randn(..., requires_grad=True).to(device)`)."

    def check(self, ctx: Context):
        facts = {}
        for opt in ctx.events.optimizers:
            for fact in opt.params:
                if not fact.is_leaf:
                    facts.setdefault(fact.name, (fact, opt.location, "optimizer"))
        for read in ctx.events.grad_reads:
            if not read.tensor.is_leaf:
                facts.setdefault(read.tensor.name, (read.tensor, read.location, "grad"))
        for _, flow in ctx.flows():
            for fact in flow.unreached:
                if not fact.is_leaf and fact.requires_grad:
                    facts.setdefault(fact.name, (fact, None, "flow"))
        for name, (fact, where, how) in facts.items():
            loc = fact.made_non_leaf or fact.created
            op = f"`{loc.text}`" if loc is not None and loc.text else "an operation"
            consequence = ("The optimizer cannot optimize it" if how == "optimizer"
                           else "Its `.grad` stays `None`")
            message = f"`{name}` is not a leaf tensor: {op} is applied after `requires_grad=True`"
            help = (f"{consequence}, since {op} made a new tensor from the one created with "
                    f"`requires_grad=True`: create it on the final device/dtype and with the final value "
                    f"first, then set `requires_grad=True`.")
            rel = related(fact.created if fact.created != loc else None, "the leaf tensor is created here")
            rel += related(where, "the optimizer receives the non-leaf tensor here" if how == "optimizer"
                           else "`.grad` of the non-leaf tensor is read here" if how == "grad" else "")
            yield self.diagnostic(
                message, loc, help=help, related=rel,
                fix=display_fix("Create the tensor with `device=`/`dtype=` (or its final value) and "
                                "`requires_grad=True`, or call `.requires_grad_()` last"),
                explains=[name], tensor=name)
