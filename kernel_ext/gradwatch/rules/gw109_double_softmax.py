"""## What it does
Flags `nn.CrossEntropyLoss` / `F.cross_entropy` applied to the output of `softmax` or
`log_softmax`, and `nll_loss` applied to `softmax` probabilities. It points at the loss call and
at the softmax.

## Why is this bad?
`cross_entropy` applies `log_softmax` itself and expects raw logits. Feeding it probabilities
squashes them twice: the loss can never get near zero and its gradients become tiny, so
training is slow or stalls. `nll_loss` expects log-probabilities, not probabilities.

## Example
```python
model = nn.Sequential(nn.Linear(20, 10), nn.Softmax(dim=1))
loss = nn.CrossEntropyLoss()(model(x), y)
```

## Use instead
```python
model = nn.Sequential(nn.Linear(20, 10))
loss = nn.CrossEntropyLoss()(model(x), y)   # logits in; softmax only for predictions
```
"""

from __future__ import annotations

from ..measurements import LossCall
from .base import Context, Rule, Severity, display_fix, related

_LOGITS_LOSSES = {"cross_entropy", "nll_loss"}
_SOFTMAX = {"softmax", "log_softmax"}


class DoubleSoftmax(Rule):
    code = "GW109"
    name = "double-softmax"
    severity = Severity.WARNING
    summary = "`softmax`/`log_softmax` output fed into `cross_entropy` (or `softmax` into `nll_loss`)."

    def check(self, ctx: Context):
        for f in ctx.measured(LossCall):
            if f.op not in _LOGITS_LOSSES or f.producer not in _SOFTMAX \
                    or (f.op == "nll_loss" and f.producer == "log_softmax"):
                continue  # log-probabilities are what nll_loss expects
            loc, src = f.location, f.producer_location
            call = f"`{loc.text}`" if loc is not None and loc.text else f"`{f.op}`"
            made = f"`{src.text}`" if src is not None and src.text else f"`{f.producer}`"
            if f.op == "cross_entropy":
                message = f"{made} feeds `cross_entropy`, which does its own `log_softmax`"
                help = (f"{call} applies `cross_entropy` to the output of {made}, so the gradients shrink "
                        f"and training stalls: pass the raw logits instead.")
            else:
                message = f"{made} feeds probabilities to `nll_loss`, which expects log-probabilities"
                help = f"{call} applies `nll_loss` to the `softmax` probabilities: use `log_softmax` instead."
            # the line to edit is the softmax (often in `forward`); the loss only shows it
            yield self.diagnostic(message, src or loc, help=help,
                                  related=related(loc, f"`{f.op}` receives the probabilities here")
                                  if src is not None else [],
                                  fix=display_fix(f"Remove the `{f.producer}` before the loss"),
                                  op=f.op, producer=f.producer)
