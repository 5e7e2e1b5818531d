"""## What it does
Flags an operation on the path from a trained tensor to the loss whose gradient is zero or
undefined: `argmax`/`argmin`, comparisons, integer casts (no gradient at all) and
`round`/`floor`/`ceil`/`sign`/`trunc` (gradient zero almost everywhere).

## Why is this bad?
The forward pass works and the loss has a value, but the trained tensors behind such an op
get no gradient or a gradient of exactly zero, so training does not move them.

## Example
```python
pred = torch.argmax(model(x), dim=1).float()
loss = F.mse_loss(pred, y)
```

## Use instead
```python
logits = model(x)
loss = F.cross_entropy(logits, y)  # a differentiable surrogate of the discrete choice
```
Use `argmax` / `round` for metrics and decisions, not inside the loss.
"""

from __future__ import annotations

from .base import Context, Rule, Severity, display_fix, names, related, them


class ZeroGradientOp(Rule):
    code = "GW003"
    name = "zero-gradient-op"
    severity = Severity.WARNING
    summary = "An op without (useful) gradient sits between a trained tensor and the loss."

    def check(self, ctx: Context):
        for event, flow in ctx.flows():
            for cut in flow.cuts:
                cut_off = ctx.trained_by_this_step(event, flow, cut.cut_off)
                if cut.kind not in ("nondiff", "zero_grad") or not cut_off:
                    continue
                expr = f"`{cut.location.text}`" if cut.location and cut.location.text else f"`{cut.op}`"
                what = "has no gradient" if cut.kind == "nondiff" else "has a zero gradient almost everywhere"
                message = (f"{expr} {what}, so {names(cut_off)} {them(cut_off, 'gets', 'get')} "
                           f"no useful gradient from "
                           f"`{flow.loss_name or 'the loss'}`; use a differentiable surrogate in the loss")
                yield self.diagnostic(
                    message, cut.location, related=related(event.location, "backward() is called here"),
                    fix=display_fix("Replace the op with a differentiable surrogate (e.g. softmax probabilities)"),
                    explains=cut_off, op=cut.op, cut_off=cut_off)
