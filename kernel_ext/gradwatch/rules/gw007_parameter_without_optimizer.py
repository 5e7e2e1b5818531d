"""## What it does
Flags parameters that receive gradients from `backward()` but belong to no optimizer, and the
*stale optimizer*: the model was re-created after its optimizer was built, so the optimizer
still holds the old model's parameters.

## Why is this bad?
Gradients are computed for these parameters on every step and then thrown away: nothing
updates them. With a stale optimizer the model being trained is not the one being evaluated,
and the loss never improves.

## Example
```python
model = Net()
optimizer = torch.optim.Adam(model.parameters())
model = Net()  # re-created: the optimizer holds the first model's parameters
```

## Use instead
```python
model = Net()
optimizer = torch.optim.Adam(model.parameters())
```
"""

from __future__ import annotations

import re

from ..diagnostics import Location
from .base import Context, Rule, Severity, all_names, display_fix, names, related, short_names, them


class ParameterWithoutOptimizer(Rule):
    code = "GW007"
    name = "parameter-without-optimizer"
    severity = Severity.WARNING
    summary = "Parameters get gradients but no optimizer updates them (e.g. a stale optimizer)."
    defers_to = frozenset({"GW001", "GW002", "GW003", "GW004"})

    def check(self, ctx: Context):
        if not ctx.events.n_steps:
            return  # no optimizer steps in this cell: manual updates, or evaluation only
        done: set[str] = set()  # reported for an earlier backward() of the cell
        for event, flow in ctx.flows():
            unowned = [f for f in flow.reached_unowned if f.name not in ctx.explained | done
                       and not _made_each_iteration(ctx, f, event.location)]
            if not unowned:
                continue
            orphans = [f.name for f in unowned]
            stale = [f for f in flow.unreached if f.owners and f.requires_grad and f.is_leaf]
            shapes = sorted(f.shape for f in unowned)
            unregistered = sorted({f.unregistered_in for f in unowned if f.unregistered_in})
            if unregistered and all(f.unregistered_in for f in unowned):
                container = unregistered[0]
                message = f"`{container}` is a plain Python container, so the layers in it are not registered"
                help = (f"`parameters()` leaves out {names(orphans)}, which receive gradients that no "
                        f"optimizer applies: use `nn.ModuleList`/`nn.ModuleDict`.")
                done.update(orphans)
                yield self.diagnostic(message, unowned[0].created or event.location, help=help,
                                      related=related(event.location, "backward() is called here"),
                                      fix=display_fix("Wrap the list in `nn.ModuleList(...)`"),
                                      explains=orphans, stale=False, parameters=orphans)
                continue
            if stale and (sorted(f.shape for f in stale) == shapes or _one_model(orphans)):
                module = orphans[0].split(".")[0]
                opt = stale[0].owners[0]
                opt_at = stale[0].owner_locations[0] if stale[0].owner_locations else None
                holder = stale[0].name.split(".")[0] if "." in stale[0].name else ""
                if holder.isidentifier() and holder != module and holder not in stale[0].owners:
                    # the optimizer holds a live model's parameters, not those of the model the loss uses
                    explains = [f.name for f in stale] + orphans
                    done.update(explains)
                    yield self.diagnostic(
                        f"`{opt}` updates `{holder}`, but the loss is computed with `{module}`",
                        opt_at or event.location,
                        help=(f"`{opt}` was built over `{holder}`'s parameters, so `{opt}.step()` leaves "
                              f"{short_names(orphans)} of `{module}` as {them(orphans, 'it is', 'they are')}: "
                              f"build `{opt}` over `{module}.parameters()`.{all_names(orphans)}"),
                        related=related(event.location, f"backward() computes gradients for `{module}` here"),
                        fix=display_fix(f"Build `{opt}` over `{module}.parameters()`"),
                        explains=explains, stale=True, parameters=orphans)
                    continue
                created = unowned[0].created
                if created is not None and opt_at is not None and _before(opt_at, created) \
                        and not created.source.lstrip().startswith("self."):
                    loc = created  # made outside a constructor, after the optimizer: a head swapped in
                    message = f"{short_names(orphans)} {them(orphans, 'replaces', 'replace')} parameters of `{opt}`"
                    help = (f"{them(orphans, 'It', 'They')} {them(orphans, 'was', 'were')} made after `{opt}` was "
                            f"built, so `{opt}.step()` updates the replaced parameters, which the loss no longer "
                            f"uses: make the change before the optimizer is built.{all_names(orphans)}")
                else:
                    loc = ctx.source_map.find_assignment(module) if ctx.source_map and module.isidentifier() else None
                    message = f"`{opt}` was built for an earlier `{module}`"
                    help = (f"The model was re-created after the optimizer, so `{opt}.step()` updates parameters "
                            f"the loss no longer uses: build the optimizer after the model.")
                explains = [f.name for f in stale] + orphans
                done.update(explains)
                rel = related(stale[0].owner_locations[0] if stale[0].owner_locations else None,
                              f"`{opt}` is built here, from the earlier `{module}`")
                rel += related(event.location, "backward() computes gradients for the new model here")
                yield self.diagnostic(message, loc or event.location, help=help, related=rel,
                                      fix=display_fix(f"Create `{opt}` after the last `{module} = ...`"),
                                      explains=explains, stale=True, parameters=orphans)
                continue
            done.update(orphans)
            it = them(orphans)
            message = f"{short_names(orphans)} {them(orphans, 'is', 'are')} in no optimizer"
            help = (f"{them(orphans, 'It receives', 'They receive')} gradients from "
                    f"`{flow.loss_name or 'the loss'}`, but nothing updates {it}: add {it} to the optimizer "
                    f"or freeze {it} with `requires_grad_(False)`.{all_names(orphans)}")
            loc = unowned[0].created or event.location
            opt_loc = next((loc_ for f in flow.unreached + flow.reached_unowned for loc_ in f.owner_locations
                            if loc_ is not None), None) or _any_optimizer_location(ctx)
            if unowned[0].created is not None and opt_loc is not None and _before(unowned[0].created, opt_loc):
                # the layers existed when the optimizer was built: its parameter list left them out
                loc = _framework_made_at(ctx, opt_loc) or opt_loc
            yield self.diagnostic(message, loc, help=help, related=related(event.location, "backward() is called here"),
                                  fix=display_fix("Pass these parameters to the optimizer"),
                                  explains=orphans, stale=False, parameters=orphans)


def _framework_made_at(ctx: Context, built_at: Location) -> Location | None:
    """A framework object built the optimizer in a call the user made (`trainer.train()` in
    Hugging Face's `Trainer.create_optimizer`): where that object was made, since what it
    trains is given there (`Trainer(model=...)`)."""
    call = _METHOD_CALL.search(built_at.text or "")
    if call is None or ctx.source_map is None or "optim" in call.group(0):
        return None
    return ctx.source_map.find_assignment(call.group(1))


_METHOD_CALL = re.compile(r"^(\w+)\.\w+\(")


def _before(a, b) -> bool:
    """Whether source location ``a`` comes before ``b`` (cells by execution count)."""
    return a.path == b.path and (a.cell or 0, a.line) < (b.cell or 0, b.line)


def _any_optimizer_location(ctx: Context):
    """Where the (one) optimizer was built, also when an earlier cell built it."""
    places = list(ctx.events.optimizer_locations.values())
    return places[0] if len(places) == 1 else next(
        (o.location for o in ctx.events.optimizers if o.location is not None), None)


def _one_model(orphans: list[str]) -> bool:
    """The parameters the loss uses but no optimizer holds all belong to one named model."""
    return len({o.split(".")[0] for o in orphans}) == 1 and "." in orphans[0]


def _made_each_iteration(ctx: Context, fact, backward_at) -> bool:
    """An input made in the training loop itself (``x = torch.randn(..., requires_grad=True)``
    for an input-gradient penalty) is data, not a parameter someone forgot."""
    return (fact.kind == "tensor" and fact.created is not None and backward_at is not None
            and ctx.source_map is not None and ctx.source_map.in_same_loop(fact.created, backward_at))
