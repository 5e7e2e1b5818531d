"""## What it does
Explains *Trying to backward through the graph a second time*: it points at the tensor that
was computed in an earlier iteration (or before the loop) whose graph the previous
`backward()` already freed, but which the new loss still depends on.

## Why is this bad?
`backward()` frees the graph it ran through. A hidden state carried from one iteration to the
next, or a forward pass computed once outside the loop, links every new loss to that freed
graph. `retain_graph=True` hides the error but makes every step backpropagate through all
previous ones, ever slower and usually wrong.

## Example
```python
hidden = torch.zeros(1, 8)
for x in batches:
    hidden = torch.tanh(x @ W + hidden @ U)
    loss = hidden.pow(2).mean()
    loss.backward()
```

## Use instead
```python
hidden = torch.zeros(1, 8)
for x in batches:
    hidden = torch.tanh(x @ W + hidden.detach() @ U)
    loss = hidden.pow(2).mean()
    loss.backward()
```
"""

from __future__ import annotations

from .base import Context, Rule, Severity, display_fix, related


class BackwardThroughFreedGraph(Rule):
    code = "GW010"
    name = "backward-through-freed-graph"
    severity = Severity.ERROR
    summary = "`backward()` a second time through a graph an earlier `backward()` freed."

    def check(self, ctx: Context):
        previous = None
        for event in ctx.events.backwards:
            info = event.explain
            if info.get("kind") != "freed_graph":
                previous = event
                continue
            name = info.get("carried_name")
            what = f"`{name}`" if name else "a tensor"
            loc = info.get("carried_location") or event.location
            loss = info.get("loss_name") or "the loss"
            rel = []
            # no step between the two backward() calls: two losses of one iteration
            same_iteration = info.get("same_iteration") or (
                info.get("carried_location") is None and previous is not None
                and previous.index == event.index - 1 and previous.steps_before == event.steps_before)
            if same_iteration:
                message = f"the previous `backward()` freed the graph of {what}, which `{loss}` also depends on"
                help = ("Pass `retain_graph=True` to the first `backward()`, or call `backward()` once on the "
                        "sum of the losses.")
                # the line to edit is the first backward() (or both, summed into one)
                if previous is not None and previous.location is not None:
                    if info.get("carried_location") is not None:
                        rel += related(loc, f"{what} is computed here, before both backward() calls")
                    loc = previous.location
            else:
                message = f"{what} was computed before the previous `backward()` freed its graph"
                help = (f"`{loss}` still depends on it, so this `backward()` fails: detach it between iterations "
                        f"(`{name or 'x'} = {name or 'x'}.detach()`) or recompute it inside the loop.")
            rel += related(event.location, "the second backward() fails here")
            yield self.diagnostic(message, loc, help=help, related=rel,
                                  fix=display_fix("Detach the carried tensor each iteration, "
                                                  "or compute it inside the loop"),
                                  tensor=name)
