"""## What it does
Flags an operation on the path from a trained tensor to the loss whose gradient is zero or
undefined: `argmax`/`argmin`, comparisons, integer casts (no gradient at all), and ops whose
gradient autograd defines as zero: `round`/`floor`/`ceil`/`sign`/`trunc`, and sampling such as
`torch.normal(mu, std)` or `torch.bernoulli(p)`. Which ops pass a zero gradient is asked of
autograd (the op is probed once on random inputs), not read off a list.

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
Use `argmax` / `round` for metrics and decisions, not inside the loss. To sample a latent
that the encoder learns from, reparameterise: `z = mu + std * torch.randn_like(std)` instead of
`torch.normal(mu, std)`.
"""

from __future__ import annotations

from .base import Context, Rule, Severity, all_names, display_fix, related, short_names, them
from .gw002_graph_cut import backward_note


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
                loss = f"`{flow.loss_name}`" if flow.loss_name else "the loss"
                sampling = cut.op in _SAMPLING
                what = ("has no gradient" if cut.kind == "nondiff" else
                        "draws a random sample, which passes no gradient to its parameters" if sampling else
                        "has a zero gradient almost everywhere")
                advice = ("sample with the reparameterisation `mu + std * torch.randn_like(std)`" if sampling
                          else "use a differentiable surrogate in the loss")
                message = f"{expr} passes no useful gradient to {short_names(cut_off, 36)}"
                help = (f"It {what}, so {them(cut_off, 'it gets', 'they get')} no useful gradient from {loss}: "
                        f"{advice}.{all_names(cut_off, 36)}")
                fix = ("Sample as `mu + std * torch.randn_like(std)` (or `dist.rsample()`)" if sampling
                       else "Replace the op with a differentiable surrogate (e.g. softmax probabilities)")
                rel = related(event.location, backward_note(event.location, flow.loss_name))
                yield self.diagnostic(message, cut.location, help=help, related=rel, fix=display_fix(fix),
                                      explains=cut_off, op=cut.op, cut_off=cut_off)


# ops that draw random numbers: the advice is to reparameterise (which ops pass no gradient is
# probed, see trace/grad_probe.py; this only words the advice)
_SAMPLING = {"normal", "normal_", "bernoulli", "bernoulli_", "poisson", "multinomial", "binomial"}
