"""## What it does
Flags the place where the path from a trained tensor to the loss is cut: `.detach()`, `.data`,
a `.numpy()` / `.item()` / `.tolist()` round trip re-wrapped with `torch.tensor(...)`, a
forward computed under `torch.no_grad()`, `torch.inference_mode()` or
`torch.set_grad_enabled(False)`, or a reentrant `checkpoint(..., use_reentrant=True)` none of
whose tensor inputs requires grad (it then records no graph; the finding points at the
`checkpoint(...)` call). It names the tensors that the cut separates from the loss.

## Why is this bad?
Values still flow through such a cut, so the loss looks right, but gradients do not: the
tensors before the cut get no `.grad` (or `loss.backward()` fails with *element 0 of tensors
does not require grad*), and the optimizer never updates them.

## Example
```python
y_pred = torch.matmul(X, w) + b
detached_y_pred = y_pred.detach()
loss = mse_loss(detached_y_pred, y)
```

## Use instead
```python
y_pred = torch.matmul(X, w) + b
loss = mse_loss(y_pred, y)
```
Detach only what must not be trained, e.g. a generator's output in a GAN's discriminator step.
"""

from __future__ import annotations

from dataclasses import replace

from .base import (Context, Rule, Severity, all_names, display_fix, names, related, replace_fix, short_names,
                   them)

_WHY = {
    "detach": "returns a tensor without gradient history",
    "data": "returns the raw data without gradient history",
    "no_grad": "runs under `torch.no_grad()`",
    "inference_mode": "runs under `torch.inference_mode()`",
    "escape": "leaves autograd (a Python/NumPy value) and is re-wrapped later",
    "rewrap": "copies the values of tensors into a new tensor without gradient history",
    "checkpoint": ("runs its function without gradient tracking and, with `use_reentrant=True`, records "
                   "a graph only when one of its tensor inputs requires grad; none does"),
}


class GraphCut(Rule):
    code = "GW002"
    name = "graph-cut"
    severity = Severity.ERROR
    summary = "The path from a trained tensor to the loss is cut (`.detach()`, `no_grad`, ...)."

    def check(self, ctx: Context):
        # A tensor another backward() reaches was detached on purpose here (a GAN's
        # discriminator step detaches the generator's output).
        reached = {name for _, flow in ctx.flows() for name in flow.reached}
        for event, flow in ctx.flows():
            for cut in _merged(flow.cuts):
                if cut.kind not in _WHY:
                    continue
                if cut.term_trains is not None and (not event.consumers or cut.term_trains & set(event.consumers)):
                    continue  # the term trains this step's parameters: a stop-gradient on purpose
                cut_off = [n for n in ctx.trained_by_this_step(event, flow, cut.cut_off)
                           if n not in reached or cut.dead_term is not None]
                if not cut_off:
                    continue
                expr = f"`{cut.location.text}`" if cut.location and cut.location.text else f"`{cut.op}`"
                loss = f"`{flow.loss_name}`" if flow.loss_name else "the loss"
                where, why, advice = cut.location, _WHY[cut.kind], _advice(cut)
                rel = []
                if cut.kind == "checkpoint":  # the user's `checkpoint(...)` call, not an op inside it
                    if cut.scope is not None:
                        where, expr = cut.scope, f"`{cut.scope.text}`"
                        rel += related(cut.location, "computed here, inside the checkpointed function")
                elif cut.scope is not None and cut.scope is cut.context:  # a `with` block, maybe up the stack
                    where, why = cut.scope, f"turns gradient tracking off for {expr}"
                    expr = f"`{cut.scope.text}`"
                    rel += related(cut.location, "computed here without gradient tracking")
                elif cut.scope is not None:  # a call inside a `@torch.no_grad()` function
                    where = cut.scope
                    why = f"runs inside a function decorated with `{cut.context.text}`" if cut.context else why
                    expr, advice = f"`{cut.scope.text}`", "run it under `with torch.enable_grad():`"
                    rel += related(cut.context, "gradient tracking is disabled by this decorator")
                    rel += related(cut.location, "computed here without gradient tracking")
                elif cut.kind == "escape":
                    rel += related(cut.context, "the value comes back into the loss here, without its history")
                else:
                    rel += related(cut.context, "gradient tracking is disabled by this block")
                if cut.dead_term is not None:
                    term = f"`{cut.dead_term.text}`" if cut.dead_term.text else "a term"
                    message = f"{expr} makes the term {term} of {loss} a constant for autograd"
                    help = f"It {why}, so that term trains none of {names(cut_off)}: {advice}."
                    rel += related(cut.dead_term, "this term of the loss has no gradient path")
                else:
                    message = f"{expr} cuts {short_names(cut_off)} off {loss}"
                    help = (f"It {why}, so no gradient reaches {them(cut_off)}: {advice}."
                            f"{all_names(cut_off)}")
                rel += related(event.location, backward_note(event.location, flow.loss_name))
                yield self.diagnostic(message, where, help=help, related=rel, fix=_fix(cut),
                                      explains=cut_off, cut=cut.kind, op=cut.op, cut_off=cut_off)


def backward_note(location, loss_name: str | None) -> str:
    """What the related location of a backward() says: the user's call that runs it when a
    framework calls backward() (`trainer.fit(model)`, `trainer.train()`)."""
    text = location.text.strip() if location is not None else ""
    if text and "backward" not in text:
        return f"`{text}` calls `backward()`"
    return f"`{loss_name or 'loss'}.backward()` is called here"


def _merged(cuts: list) -> list:
    """One cut per place: a `.data` in a layer's `forward` cuts each instance's weight there."""
    by_place: dict = {}
    for cut in cuts:
        loc = cut.scope or cut.location
        key = (cut.kind, loc and (loc.cell, loc.path, loc.line, loc.column)) if loc else id(cut)
        first = by_place.setdefault(key, cut)
        if first is not cut:
            by_place[key] = replace(first, cut_off=list(dict.fromkeys(first.cut_off + cut.cut_off)))
    return list(by_place.values())


def _advice(cut) -> str:
    if cut.kind in ("detach", "data") and cut.input_text:
        return f"use `{cut.input_text}` itself"
    if cut.kind in ("no_grad", "inference_mode"):
        return "compute the forward pass outside the `with` block"
    if cut.kind == "escape":
        return "keep the computation in torch tensors"
    if cut.kind == "rewrap":
        return "build the tensor with `torch.stack`/`torch.cat` instead"
    if cut.kind == "checkpoint":
        return "pass `use_reentrant=False` (or give the checkpoint an input that requires grad)"
    return "keep the computation differentiable"


def _fix(cut):
    if cut.kind in ("detach", "data") and cut.input_text:
        return replace_fix(f"Use `{cut.input_text}` instead", cut.location, cut.input_text)
    if cut.kind in ("no_grad", "inference_mode"):
        return display_fix("Move the forward pass and the loss out of the no-grad block")
    if cut.kind == "checkpoint":
        return display_fix("Pass `use_reentrant=False` to `torch.utils.checkpoint.checkpoint`")
    return display_fix("Compute the loss from torch tensors without leaving autograd")
