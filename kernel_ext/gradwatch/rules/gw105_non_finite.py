"""## What it does
Reports the first step at which the loss or a gradient became NaN or Inf, names the parameters
whose gradients went non-finite first, and — when that forward pass was traced (the first
iterations, and the iterations right after gradwatch sees a NaN) — points at the first op that
produced a non-finite value, like `torch.autograd.detect_anomaly()` at a fraction of its cost.
A loss that is already NaN/Inf in the forward pass while the gradients before it were finite
(a NaN in an input batch late in a long loop) is said as such, at the line that computes it,
counted in `backward()` calls. Steps that `torch.amp.GradScaler` skips because of Inf gradients
are expected and not flagged.

## Why is this bad?
One NaN spreads to every parameter through the next `optimizer.step()`, and from then on the
model only produces NaN. The cause is usually earlier and elsewhere: `log` or `sqrt` of zero or
a negative number, a division by zero, `exp` overflow, NaN in the data, or a learning rate so
large that the values overflow.

## Example
```python
probs = model(x).softmax(dim=1)
loss = -(y_onehot * torch.log(probs)).sum()   # log(0) = -inf
```

## Use instead
```python
log_probs = model(x).log_softmax(dim=1)
loss = -(y_onehot * log_probs).sum()
```
Or clamp the input (`torch.log(p.clamp_min(1e-12))`), clean the data, or lower the learning rate.
"""

from __future__ import annotations

import math
from typing import Any

from ..measurements import GradientStatistics, LossStatistics, NonFiniteOrigin, ZeroIntoSingularOp
from .base import Context, Rule, Severity, all_names, display_fix, names, related, short_names


_GROWN = 1e3  # a largest finite loss this many times the first ones: the values overflowed


class NonFinite(Rule):
    code = "GW105"
    name = "non-finite"
    severity = Severity.ERROR
    summary = "The loss or a gradient became NaN or Inf."
    one_per_place = True
    blames_unscaled_data = True

    def check(self, ctx: Context):
        origin: dict[str, Any] | None = next(
            (dict(op=o.op, location=o.location, inputs=o.inputs, iteration=o.iteration)
             for o in ctx.measured(NonFiniteOrigin)), None)
        singular: dict[str, Any] | None = next(
            (dict(op=s.op, location=s.location) for s in ctx.measured(ZeroIntoSingularOp)), None)
        values = nonfinite_values(ctx)
        if not values and (origin is None or _losses_stayed_finite(ctx)):
            return  # an -inf that never reached a loss: an attention mask's, which softmax makes 0
        v = min(values, key=lambda f: min(x for x in (f.get("grad_step"), f.get("loss_step"), 1 << 30)
                                         if x is not None)) if values else {}
        grad_step, loss_step = v.get("grad_step"), v.get("loss_step")
        loss_loc = v.get("loss")
        loss = _loss_name(loss_loc)
        cut_names = ""  # the parameters the message leaves out, for the help
        if loss_step is not None and (grad_step is None or loss_step <= grad_step):
            what, step = f"`{loss}`" if loss.isidentifier() else loss, loss_step
        elif grad_step is not None:
            params = v.get("params") or ["a parameter"]
            what, step = f"the gradient of {short_names(params, 40)}", grad_step
            cut_names = all_names(params, 40)
        else:
            what, step = "a value in the forward pass", origin.get("iteration") if origin is not None else None
        message = f"{what} first became NaN/Inf at step {step}"
        if v.get("forward") and loss_step is not None and (origin is None or (
                origin.get("inputs") and origin.get("iteration", 0) > loss_step)) \
                and (v.get("checked", -1) < 0 or singular is None):  # (a traced op met 0: backward's story)
            yield self._made_in_forward(ctx, v, loss, loss_step)
            return
        notes: list[str] = []  # the help: why, then what to do
        if origin is not None and origin.get("inputs") and grad_step is not None \
                and origin.get("iteration", 0) > grad_step:
            # the traced forward only saw parameters that a NaN gradient had already spoiled
            origin = None
            message += " in `backward()`"
            if singular is not None and singular.get("location") is not None:
                notes.append(f"`{singular['location'].text or singular['op']}` gets an input that is exactly 0, "
                             f"where the derivative of `{singular['op']}` is infinite.")
                origin = dict(singular, inputs=[], said=True)
            else:
                notes.append("An op's derivative is infinite there, such as `sqrt` or `norm` at 0.")
        if origin is not None and origin.get("location") is not None and not origin.get("said"):
            text = origin["location"].text or origin["op"]
            if len(text) <= 40:  # the line is flagged in any case: a long expression stays in the help
                message += f", from `{text}`"
            note = f"The first non-finite value came from `{text}`"
            if origin.get("inputs"):
                note += f", whose input {names(origin['inputs'], 2)} already held NaN/Inf"
            notes.append(note + ".")
        notes.append("Guard that op (clamp its input, add an epsilon), check the data, or lower the learning rate.")
        location = (origin or {}).get("location") or loss_loc
        data = ctx.unscaled_input()
        if data is not None and (origin is None or origin.get("inputs")):
            # no op of its own made the NaN: the values grew until they overflowed
            notes.append(f"`{data.name}` holds values up to {data.max_abs:,.3g}: unscaled data makes the updates "
                         f"overshoot until they overflow, so standardize it first.")
            location = data.created
        elif (origin is None or origin.get("inputs")) and ctx.source_map is not None \
                and (summed := ctx.source_map.find_summed_loss()) is not None:
            notes.append(f"`{summed.text}` sums over the batch, so every step is batch-size times larger and the "
                         f"values overflow: use `reduction='mean'` or a smaller learning rate.")
            location = summed
        rel = related(loss_loc, f"`{loss}` is non-finite from step {step} on") if location is not loss_loc else []
        if v.get("optimizer_location") is not None and grad_step is not None:
            rel += related(v["optimizer_location"], f"`{v['optimizer']}` applies the NaN/Inf gradients")
        yield self.diagnostic(message, location, help=" ".join(notes) + cut_names, related=rel,
                              fix=display_fix("Clamp the op's input or add an epsilon; lower the learning rate"),
                              step=step, grad_step=grad_step, loss_step=loss_step,
                              parameters=v.get("params", []), op=(origin or {}).get("op"))

    def _made_in_forward(self, ctx: Context, v: dict[str, Any], loss: str, loss_step: int):
        """The loss was NaN/Inf while the gradients of the step before were finite, and the loss
        had not been growing: the forward of that step made it, most likely from a NaN input."""
        loss_loc = v.get("loss")
        computed = _loss_assignment(ctx, loss_loc, loss)
        call = f"the {loss_step:,}{_ordinal_suffix(loss_step)} `backward()` call"
        checked = v.get("checked", -1)
        before = "every gradient before it was finite" if checked < 0 else \
            f"the gradients were finite when last checked, at the {checked:,}{_ordinal_suffix(checked)} `step()`"
        said = f"`{loss}`" if loss.isidentifier() else loss
        message = f"{said} was already NaN/Inf in the forward pass of {call}"
        help = (f"{before[0].upper()}{before[1:]}: an input of that step (a batch) may hold NaN/Inf"
                + ("" if checked < 0 else ", or the `backward()` of the step before made a NaN/Inf gradient")
                + ". Check the inputs with `torch.isfinite(x).all()`, or guard the op that makes it "
                "(`log` or a division at 0: clamp its input, add an epsilon).")
        rel = related(loss_loc, f"`{loss}.backward()` saw a NaN/Inf loss from {call} on") \
            if computed is not None else []
        if v.get("optimizer_location") is not None:
            rel += related(v["optimizer_location"], f"`{v['optimizer']}` applies the NaN/Inf gradients")
        return self.diagnostic(message, computed or loss_loc, help=help, related=rel,
                               fix=display_fix("Check the inputs for NaN/Inf; guard the op that makes it"),
                               step=loss_step, grad_step=v.get("grad_step"), loss_step=loss_step,
                               parameters=v.get("params", []), op=None)


def _loss_assignment(ctx: Context, loss_loc, loss: str):
    """Where the cell computes the loss passed to ``backward()`` (``loss = ...``), if in its cell."""
    if ctx.source_map is None or loss_loc is None or not loss.isidentifier():
        return None
    found = ctx.source_map.find_assignment(loss)
    if found is None or (found.cell, found.path) != (loss_loc.cell, loss_loc.path) or found.line > loss_loc.line:
        return None
    return found


def _ordinal_suffix(n: int) -> str:
    return "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _losses_stayed_finite(ctx: Context) -> bool:
    """Every loss an optimizer stepped on was finite and the cell did not raise."""
    losses = ctx.measured(LossStatistics)
    return ctx.events.cell_error is None and bool(losses) and all(
        m.first_nonfinite is None and m.finite_count > 0 for m in losses)


def nonfinite_values(ctx: Context) -> list[dict[str, Any]]:
    """Per optimizer: the first step whose loss or gradients were not finite, and the
    parameters whose gradients went non-finite at that step."""
    grads = {m.optimizer.key: m for m in ctx.measured(GradientStatistics)}
    losses = {m.optimizer.key: m for m in ctx.measured(LossStatistics)}
    out = []
    for key in dict.fromkeys([*grads, *losses]):
        g, loss = grads.get(key), losses.get(key)
        first = min(g.first_nonfinite_step, default=math.inf) if g is not None else math.inf
        grad_step = int(first) if math.isfinite(first) else None
        loss_bad = loss.first_nonfinite if loss is not None else None
        if grad_step is None and loss_bad is None:
            continue
        bad = [n for n, v in zip(g.params, g.first_nonfinite_step, strict=False) if v == first] \
            if g is not None and grad_step else []
        some = g or loss
        assert some is not None
        loss_step = int(loss_bad + 1) if loss_bad is not None else None
        # made in the forward: no sampled gradient went bad before that loss, and the finite losses
        # had not grown (no overflow of the values); sure when the step before it was sampled finite
        forward = loss is not None and loss_step is not None and (grad_step is None or loss_step <= grad_step) \
            and loss.finite_count > 0 and not _grew(loss)
        checked = int(g.last_finite_step) if g is not None else 0
        if forward and loss_step is not None and (g is None and loss_step == 1 or checked >= loss_step - 1):
            checked = -1  # the gradients of the step before were seen finite
        out.append(dict(optimizer=some.optimizer.name, optimizer_location=some.optimizer.location,
                        loss=some.loss, grad_step=grad_step,
                        loss_step=loss_step, forward=forward, checked=checked, params=bad[:16], n_params=len(bad)))
    return out


def _grew(loss: LossStatistics) -> bool:
    """Whether the finite losses spread so far that the values overflowed rather than met a NaN
    (the first losses may already hold the blow-up, so the smallest one counts too)."""
    top = abs(loss.finite_max)
    return top > _GROWN * max(abs(loss.first_mean), 1e-12) or top > _GROWN ** 2 * max(abs(loss.finite_min), 1e-12)


def became_non_finite(ctx: Context) -> bool:
    """A loss or gradient became NaN/Inf, or a traced forward op made one (what GW105 reports)."""
    return bool(ctx.measured(NonFiniteOrigin)) or bool(nonfinite_values(ctx))


def _loss_name(loc) -> str:
    text = loc.text if loc is not None else ""
    return text[: -len(".backward()")] if text.endswith(".backward()") else "the loss"
