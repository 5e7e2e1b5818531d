"""## What it does
Points out `nn.BCELoss` / `F.binary_cross_entropy` applied to the output of `sigmoid`, where
`nn.BCEWithLogitsLoss` on the logits does the same, better.

## Why is this bad?
It is correct, but numerically fragile: `sigmoid` saturates to exactly 0 or 1 in float32,
`BCELoss` then clamps `log(0)` to -100 and the gradient vanishes for confidently wrong
predictions. `BCEWithLogitsLoss` fuses both with the log-sum-exp trick and keeps the gradient.

## Example
```python
prob = torch.sigmoid(model(x))
loss = nn.BCELoss()(prob, y)
```

## Use instead
```python
logits = model(x)
loss = nn.BCEWithLogitsLoss()(logits, y)
```
"""

from __future__ import annotations

from .base import Context, Rule, Severity, display_fix, related


class SigmoidBeforeBCE(Rule):
    code = "GW110"
    name = "sigmoid-before-bce"
    severity = Severity.INFO
    summary = "`sigmoid` fed into `BCELoss` where `BCEWithLogitsLoss` is meant."

    def check(self, ctx: Context):
        for f in ctx.findings(self.code):
            loc, src = f["location"], f.get("producer_location")
            call = f"`{loc.text}`" if loc is not None and loc.text else "`binary_cross_entropy`"
            made = f"`{src.text}`" if src is not None and src.text else "`sigmoid`"
            message = (f"{call} applies `binary_cross_entropy` to the `sigmoid` output of {made}, "
                       f"which loses precision and gradient when the sigmoid saturates; drop the "
                       f"sigmoid and use `nn.BCEWithLogitsLoss`")
            yield self.diagnostic(message, loc, related=related(src, "`sigmoid` is applied here"),
                                  fix=display_fix("Use `nn.BCEWithLogitsLoss` on the logits"))
