"""## What it does
Compares, over the steps of a cell, the typical gradient size per element (the RMS, averaged
in log scale over the steps) of every weight matrix, and names those whose gradients are at
least **4** orders of magnitude smaller than those of the upper-quartile layer. It needs at
least **3** weight matrices with a non-zero gradient at **4** or more of at least **8** measured
steps. A vanishing signal fades towards the input, so a matrix is named only when no matrix before
it (in the optimizer's order, which for most models is depth order) has a healthy gradient: a small
gradient behind a healthy layer, such as a freshly initialised attention's query and key, is that
matrix's own and not reported.

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

import math

from ..measurements import GradientStatistics
from .base import Context, Rule, Severity, all_names, display_fix, related, short_names

MIN_ORDERS = 4  # log10 of how much smaller than the upper-quartile layer's
MIN_LAYERS = 3
MIN_NONZERO_STEPS = 4  # per weight matrix
MIN_SAMPLED_STEPS = 8


_SATURATING = {"Sigmoid", "Tanh", "sigmoid", "tanh", "Softsign", "softsign", "Hardtanh", "hardtanh"}


class VanishingGradient(Rule):
    code = "GW107"
    name = "vanishing-gradient"
    severity = Severity.WARNING
    summary = "Some layers' gradients are orders of magnitude smaller than the others'."
    defers_to = frozenset({"GW001", "GW002", "GW003", "GW004", "GW007", "GW008", "GW103"})

    def check(self, ctx: Context):
        for g in ctx.measured(GradientStatistics):
            found = _vanishing(g)
            if found is None:
                continue
            orders, small = found
            params = [p for p in small if p not in ctx.explained]
            if not params:
                continue
            one = len(params) == 1
            message = (f"the gradient{'' if one else 's'} of {short_names(params, 30)} {'is' if one else 'are'} "
                       f"about 10^{orders:.0f} times smaller than the other layers'")
            help = (f"Vanishing gradients: {'it barely learns' if one else 'they barely learn'}. Use ReLU-like "
                    f"activations, normalization or residual connections")
            where = g.loss or g.optimizer.location
            activation = ctx.source_map.find_call(_SATURATING) if ctx.source_map else None
            rel = related(g.optimizer.location, f"`{g.optimizer.name}` trains them")
            if activation is not None:  # the line to edit: the saturating activation of the stack
                help += f" (`{activation.text}` saturates, so each layer shrinks the gradient)"
                rel = related(where, "the gradients are measured from this loss") + rel
                where = activation
            help += "." + all_names(params, 30)
            yield self.diagnostic(
                message, where, help=help, related=rel,
                fix=display_fix("Use ReLU/GELU, BatchNorm/LayerNorm or residual connections"),
                parameters=params, orders=orders)


def _vanishing(g: GradientStatistics) -> tuple[float, list[str]] | None:
    """(orders below the upper-quartile layer, the weight matrices that far below), or None."""
    if g.sampled_steps < MIN_SAMPLED_STEPS:
        return None
    # mean log10 of the per-element RMS gradient; weight matrices only: a bias right before a
    # batch norm gets ~0 by design
    rms = {i: g.sum_log10[i] / g.n_log10[i] - 0.5 * math.log10(max(g.numels[i], 1))
           for i in range(len(g.params)) if g.n_log10[i] >= MIN_NONZERO_STEPS and g.ndims[i] >= 2}
    if len(rms) < MIN_LAYERS:
        return None
    upper_quartile = sorted(rms.values())[(3 * len(rms)) // 4]
    # A signal that vanishes fades towards the input: a matrix counts only if no matrix before it (the
    # optimizer's order, which is definition order and for most models depth order) gets a healthy
    # gradient. A small gradient behind a healthy one is that matrix's own (a fresh attention's
    # query/key), not a vanishing signal.
    first_healthy = min((i for i, v in rms.items() if v - upper_quartile > -MIN_ORDERS), default=len(g.params))
    small = sorted((v - upper_quartile, g.params[i]) for i, v in rms.items()
                   if v - upper_quartile <= -MIN_ORDERS and i < first_healthy)
    if not small:
        return None
    return round(-small[0][0], 1), [name for _, name in small][:16]
