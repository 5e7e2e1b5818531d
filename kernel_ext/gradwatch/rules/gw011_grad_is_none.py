"""## What it does
Explains a cell that fails reading a `.grad` that is `None`
(*'NoneType' object has no attribute 'data'*, *unsupported operand type(s) for *: 'float' and
'NoneType'*): it points at the reason the gradient is missing, not at the line that read it.
The reasons, in the order they are checked:

- the tensor does not require grad: it was created without `requires_grad=True` (or as
  `nn.Parameter(..., requires_grad=False)`), or the name was rebound to a new tensor computed
  under `torch.no_grad()` (`w = w - lr * w.grad`);
- it is not a leaf (autograd fills `.grad` of leaves only);
- no `backward()` had run yet (`w.grad.zero_()` at the top of the first iteration);
- the loss reaches it only through a cut (`.detach()`, `argmax`, a `no_grad` block);
- the forward pass uses it, but the loss leaves that output out (it points at the loss);
- the loss does not use it at all (it points at where it is defined).

## Why is this bad?
The exception names the line that *reads* the gradient, which is rarely the line to change;
the cause is usually elsewhere, often in another cell.

## Example
```python
with torch.no_grad():
    w = w - lr * w.grad      # a new tensor without requires_grad
w.grad.zero_()              # AttributeError: 'NoneType' object has no attribute 'zero_'
```

## Use instead
```python
with torch.no_grad():
    w -= lr * w.grad         # update the leaf in place
w.grad.zero_()
```
"""

from __future__ import annotations

from ..events import GradNoneEvent
from .base import Context, Rule, Severity, display_fix, related

_WHY = {  # reason: (message, help)
    "no_requires_grad": ("`{t}` does not require grad, so backward() never fills its `.grad`",
                         "It is created without `requires_grad=True`: create it with `requires_grad=True` "
                         "(or skip it where you read `.grad`)."),
    "rebound": ("`{t}` was rebound here to a new tensor computed without gradient tracking",
                "The new tensor has no `.grad` and is no longer trained: update the tensor in place instead "
                "(`{t} -= ...` under `torch.no_grad()`)."),
    "non_leaf": ("`{t}` is not a leaf tensor (it is the result of this operation)",
                 "Autograd fills `.grad` only for leaves: make the tensor you train a leaf."),
    "before_backward": ("`{t}.grad` is `None` here: no `backward()` has reached `{t}` yet",
                        "`.grad` is `None` until the first `backward()` reaches `{t}`: zero the gradients "
                        "after the update (or use `optimizer.zero_grad()`)."),
    "cut": ("`{expr}` cuts `{t}` off the loss, so `{t}.grad` stays `None`",
            "backward() never reaches `{t}`: keep the path from `{t}` to the loss differentiable."),
    "unused": ("the loss does not use `{t}`, so `{t}.grad` stays `None`",
               "backward() never reaches `{t}`: use it in the forward pass, or skip parameters whose `.grad` "
               "is `None`."),
    "dropped": ("`{expr}` leaves the output that uses `{t}` out of the loss",
                "The forward pass uses `{t}`, but backward() never reaches it and its `.grad` stays `None`: "
                "include that output in the loss, or skip parameters whose `.grad` is `None`."),
}


class GradIsNone(Rule):
    code = "GW011"
    name = "grad-is-none"
    severity = Severity.ERROR
    summary = "The cell fails on a `.grad` that is `None`; points at why it is `None`."
    # a structural rule that already names the cause of this tensor's missing gradient wins
    defers_to = frozenset({"GW001", "GW002", "GW003", "GW004", "GW006"})

    def check(self, ctx: Context):
        event = ctx.events.cell_failure
        if not isinstance(event, GradNoneEvent):
            return
        name = event.tensor.name
        if name in ctx.explained:
            return
        cause = event.cause or event.read
        expr = cause.text if cause is not None and cause.text else event.cut_op or "an op"
        message, help = (text.format(t=name, expr=expr) for text in _WHY[event.reason])
        rel = [] if cause is event.read else related(
            event.read, f"`{event.expression}` is `None` here, and the cell fails")
        yield self.diagnostic(message, cause, help=help, related=rel,
                              fix=display_fix("Give the tensor a gradient path, or skip it where `.grad` is `None`"),
                              explains=[name], tensor=name, reason=event.reason)
