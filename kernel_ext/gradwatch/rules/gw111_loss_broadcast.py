"""## What it does
Flags `mse_loss`, `l1_loss`, `smooth_l1_loss` and `huber_loss` (and their `nn` modules) called
with an input and a target of different shapes that broadcast, e.g. `(N, 1)` against `(N,)`.

## Why is this bad?
Broadcasting turns `(N, 1)` and `(N,)` into an `(N, N)` matrix: the loss compares every
prediction with every target and averages. It runs, the loss goes down a little, and the model
learns to predict the mean. PyTorch only prints a `UserWarning` that is easy to miss.

## Example
```python
pred = model(x)            # shape (64, 1)
loss = F.mse_loss(pred, y) # y has shape (64,)
```

## Use instead
```python
loss = F.mse_loss(pred.squeeze(1), y)
```
"""

from __future__ import annotations

from ..measurements import LossCall
from .base import Context, Rule, Severity, display_fix, related

_REGRESSION = {"mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"}


class LossBroadcast(Rule):
    code = "GW111"
    name = "loss-broadcast"
    severity = Severity.ERROR
    summary = "A regression loss compares input and target shapes that broadcast silently."

    def check(self, ctx: Context):
        for f in ctx.measured(LossCall):
            if f.op not in _REGRESSION or f.broadcast_shape is None or f.target_shape is None:
                continue
            loc = f.location
            call = f"`{loc.text}`" if loc is not None and loc.text else f"`{f.op}`"

            def shape(s):
                return "(" + ", ".join(map(str, s)) + ("," if len(s) == 1 else "") + ")"

            message = (f"{call} compares input {shape(f.input_shape)} with target {shape(f.target_shape)}, "
                       f"which broadcast to {shape(f.broadcast_shape)}")
            help = ("Every prediction is compared with every target: make the shapes equal "
                    "(e.g. `.squeeze(1)` or `.view_as(...)`).")
            where, rel = loc, []
            inp, target, src = f.input_shape, f.target_shape, f.producer_location
            extra = inp[len(target):] if inp[:len(target)] == target else []
            if src is not None and len(extra) >= 2 and all(d == 1 for d in extra):
                # `[B, C, 1, 1]` against `[B, C]`: a feature map the model never flattened
                where, rel = src, related(loc, "the loss compares the shapes here")
                help = f"The prediction keeps {len(extra)} trailing size-1 dimensions from here. {help}"
            yield self.diagnostic(message, where, help=help, related=rel,
                                  fix=display_fix("Reshape input or target to the same shape"),
                                  op=f.op, input_shape=f.input_shape, target_shape=f.target_shape)
