"""## What it does
Flags parameters whose gradient was exactly zero at every measured step for many consecutive
steps up to the end of the cell (half of the measured steps, at least **20** and at most
**200**) while other parameters of the same optimizer still got gradients — for example the
layers around ReLU units that never activate ("dead ReLUs").

## Why is this bad?
A parameter with an exactly zero gradient does not learn. When a ReLU's input is negative for
every sample, nothing flows back through it, and the unit stays dead for good. Causes: a large
negative bias, a too-high learning rate that pushed the units there, or a mask that zeroes a
path.

## Example
```python
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
with torch.no_grad():
    model[0].bias.fill_(-100.0)   # every ReLU unit is dead
```

## Use instead
```python
model = nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.01), nn.Linear(16, 1))
```
Or keep the default initialization and a smaller learning rate.
"""

from __future__ import annotations

from ..measurements import GradientStatistics
from .base import Context, Rule, Severity, all_names, display_fix, related, short_names
from .gw114_step_changes_nothing import all_gradients_zero

MIN_ZERO_STEPS = 20  # measured steps with a zero gradient, up to the end of the cell
MAX_ZERO_STEPS = 200  # ... enough however long the cell ran


class DeadParameter(Rule):
    code = "GW108"
    name = "dead-parameter"
    severity = Severity.WARNING
    summary = "Parameters whose gradient is exactly zero for many consecutive steps."
    defers_to = frozenset({"GW001", "GW002", "GW003", "GW004", "GW007", "GW008", "GW103"})

    def check(self, ctx: Context):
        done: set[str] = set()
        for g in ctx.measured(GradientStatistics):
            found = _dead(g)
            if not found:
                continue
            dead_params, zero_steps = found
            dead = set(dead_params)
            # a bias whose layer's weight still learns is not a dead unit: its gradient cancels
            # (the critic's output bias in a WGAN loss `D(real).mean() - D(fake).mean()`)
            params = [p for p in dead_params if p not in ctx.explained | done
                      and not (p.endswith(".bias") and p[: -len("bias")] + "weight" not in dead)]
            if not params:
                continue
            one = len(params) == 1
            message = f"{short_names(params)} got an exactly zero gradient in each of the last {zero_steps} steps"
            help = (f"{'It' if one else 'They'} stopped learning (dead units, e.g. ReLUs that never activate): "
                    f"check the initialization, lower the learning rate or use `LeakyReLU`.{all_names(params)}")
            done.update(params)
            yield self.diagnostic(
                message, g.loss or g.optimizer.location, help=help,
                related=related(g.optimizer.location, f"`{g.optimizer.name}` trains them"),
                fix=display_fix("Use LeakyReLU, fix the initialization or lower the learning rate"),
                explains=params, parameters=params, zero_steps=zero_steps)


def _dead(g: GradientStatistics) -> tuple[list[str], int] | None:
    """(the parameters whose gradient stayed zero up to the end, for how many steps), or None
    when all or none did (all zero is GW114's)."""
    if all_gradients_zero(g):
        return None
    enough = max(MIN_ZERO_STEPS, min(g.sampled_steps // 2, MAX_ZERO_STEPS))
    dead = [i for i in range(len(g.params)) if g.zero_run[i] >= enough and g.n_present[i] > 0]
    if not dead or len(dead) >= len(g.params):
        return None
    return [g.params[i] for i in dead][:16], int(g.last_sampled_step - min(g.last_nonzero_step[i] for i in dead))
