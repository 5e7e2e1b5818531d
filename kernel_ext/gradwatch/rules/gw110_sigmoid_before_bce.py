"""## What it does
Points out `nn.BCELoss` / `F.binary_cross_entropy` applied to the output of `sigmoid`, where
`nn.BCEWithLogitsLoss` on the logits does the same, better (info). And, as a warning, a
`sigmoid` output fed into `nn.BCEWithLogitsLoss`, which applies a second sigmoid: it points at
the `sigmoid`, often in the model's `forward`.

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

from ..measurements import LossCall
from .base import Context, Rule, Severity, display_fix, related


class SigmoidBeforeBCE(Rule):
    code = "GW110"
    name = "sigmoid-before-bce"
    severity = Severity.INFO
    summary = "`sigmoid` fed into `BCELoss` where `BCEWithLogitsLoss` is meant."

    def check(self, ctx: Context):
        for f in ctx.measured(LossCall):
            if f.producer != "sigmoid" or f.op not in ("binary_cross_entropy", "binary_cross_entropy_with_logits"):
                continue
            loc, src = f.location, f.producer_location
            if f.op == "binary_cross_entropy_with_logits":  # a second sigmoid inside the loss
                yield self._twice(loc, src)
                continue
            call = f"`{loc.text}`" if loc is not None and loc.text else "`binary_cross_entropy`"
            made = f"`{src.text}`" if src is not None and src.text else "`sigmoid`"
            message = f"{call} applies `binary_cross_entropy` to a `sigmoid` output"
            help = (f"The `sigmoid` output of {made} loses precision and gradient when the sigmoid saturates: "
                    f"drop the sigmoid and use `nn.BCEWithLogitsLoss`.")
            yield self.diagnostic(message, loc, help=help, related=related(src, "`sigmoid` is applied here"),
                                  fix=display_fix("Use `nn.BCEWithLogitsLoss` on the logits"))

    def _twice(self, loc, src):
        """`sigmoid` into `BCEWithLogitsLoss`: the outputs are squashed twice, a real bug."""
        call = f"`{loc.text}`" if loc is not None and loc.text else "`binary_cross_entropy_with_logits`"
        made = f"`{src.text}`" if src is not None and src.text else "`sigmoid`"
        message = f"{made} applies `sigmoid`, and {call} applies it again"
        help = ("The loss expects logits, so the predictions are squashed into (0.5, 0.73) and training "
                "stalls: return the logits.")
        return self.diagnostic(message, src or loc, help=help, severity=Severity.WARNING,
                               related=related(loc, "the loss applies its own sigmoid here") if src else [],
                               fix=display_fix("Remove the `sigmoid` before `BCEWithLogitsLoss`"),
                               producer="sigmoid", logits=True)
