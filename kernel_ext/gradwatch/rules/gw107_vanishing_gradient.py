"""## What it does
Compares, over the steps of a cell, the typical gradient size per element of every parameter
and names the weight matrices whose gradients are at least four orders of magnitude smaller than those
of the upper-quartile layer.

## Why is this bad?
Layers whose gradients are ten thousand times smaller than the others barely move: the network
trains only its last layers. Classic causes are deep stacks of saturating activations
(`sigmoid`, `tanh`) without normalization or residual connections, and bad initialization.

## Example
```python
layers = []
for _ in range(20):
    layers += [nn.Linear(64, 64), nn.Sigmoid()]
model = nn.Sequential(*layers, nn.Linear(64, 1))
```

## Use instead
```python
layers = []
for _ in range(20):
    layers += [nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU()]
model = nn.Sequential(*layers, nn.Linear(64, 1))
```
"""

from __future__ import annotations

from .base import Context, Rule, Severity, display_fix, names, related


_SATURATING = {"Sigmoid", "Tanh", "sigmoid", "tanh", "Softsign", "softsign", "Hardtanh", "hardtanh"}


class VanishingGradient(Rule):
    code = "GW107"
    name = "vanishing-gradient"
    severity = Severity.WARNING
    summary = "Some layers' gradients are orders of magnitude smaller than the others'."
    defers_to = frozenset({"GW001", "GW002", "GW003", "GW004", "GW007", "GW008", "GW103"})

    def check(self, ctx: Context):
        for f in ctx.findings(self.code):
            params = [p for p in f["params"] if p not in ctx.explained]
            if not params:
                continue
            one = len(params) == 1
            message = (f"the gradient{'' if one else 's'} of {names(params, 3)} {'is' if one else 'are'} "
                       f"about 10^{f['orders']:.0f} times smaller than the other layers' (vanishing gradients), "
                       f"so {'it barely learns' if one else 'they barely learn'}; "
                       f"use ReLU-like activations, normalization or residual connections")
            where = f.get("loss") or f.get("optimizer_location")
            activation = ctx.source_map.find_call(_SATURATING) if ctx.source_map else None
            rel = related(f.get("optimizer_location"), f"`{f['optimizer']}` trains them")
            if activation is not None:  # the line to edit: the saturating activation of the stack
                message += f" (`{activation.text}` saturates, so each layer shrinks the gradient)"
                rel = related(where, "the gradients are measured from this loss") + rel
                where = activation
            yield self.diagnostic(
                message, where, related=rel,
                fix=display_fix("Use ReLU/GELU, BatchNorm/LayerNorm or residual connections"),
                parameters=params, orders=f["orders"])
