"""## What it does
Flags an optimizer step while the module whose parameters it trains is in eval mode with
dropout (or a batch norm whose own parameters are trained) inside. It points at the
`model.eval()` that left it there, when that call was watched, and at the step.

## Why is this bad?
In eval mode dropout does nothing and batch norm uses its running statistics instead of the
batch's, so the model trains as a different network than intended (no regularization, wrong
normalization) and the running statistics stop updating. The usual cause is a validation step
inside the epoch loop that calls `model.eval()` and never switches back.

## Example
```python
for epoch in range(10):
    for x, y in train_loader:
        ...
        optimizer.step()
    model.eval()
    validate(model)
```

## Use instead
```python
for epoch in range(10):
    model.train()
    for x, y in train_loader:
        ...
        optimizer.step()
    model.eval()
    validate(model)
```
"""

from __future__ import annotations

from ..diagnostics import Location
from ..measurements import EvalModeAtStep
from .base import Context, Rule, Severity, all_names, display_fix, related, short_names


class EvalModeTraining(Rule):
    code = "GW115"
    name = "eval-mode-training"
    severity = Severity.WARNING
    summary = "A module in eval mode (with dropout/batch norm) is being trained."

    def check(self, ctx: Context):
        for m in ctx.measured(EvalModeAtStep):
            opt, module = m.optimizer.name, m.module
            message = (f"`{module}` is in eval mode ({short_names(m.submodules, 30)} disabled) while "
                       f"`{opt}.step()` trains it")
            disabled = all_names(m.submodules, 30).replace("All of them", "Disabled")
            help = (f"Its parameters are trained with those layers disabled: call `{module}.train()` before "
                    f"the training steps.{disabled}")
            loc = m.eval_call or m.step
            train_at = _train_call_before_the_loop(ctx, module, m.step) \
                if m.train_called and m.eval_call is not None and _puts_its_argument_in_eval(ctx, m.eval_call) \
                else None
            if train_at is not None:
                # `model.train()` once before the epoch loop, and an evaluation helper (rightly) putting
                # the model it is handed in eval mode inside it: the train() call is the one to move
                rel = related(m.eval_call, f"`{module}` is put in eval mode here, and stays so")
                rel += related(m.step, f"`{opt}.step()` trains `{module}` in eval mode here")
                yield self.diagnostic(
                    message, train_at, related=rel,
                    help=(f"`{module}.train()` runs once, before the training loop, and the loop's evaluation "
                          f"leaves `{module}` in eval mode from then on: call `{module}.train()` at the start "
                          f"of every epoch.{disabled}"),
                    fix=display_fix(f"Move `{module}.train()` into the training loop"),
                    module=module, submodules=m.submodules, optimizer=opt)
                continue
            start = ctx.source_map.function_start(m.step) if ctx.source_map and m.step else None
            if not m.train_called and start is not None:
                # nothing ever puts it back in training mode: the training function needs `.train()`
                help = (f"Its parameters are trained with those layers disabled, and nothing calls "
                        f"`{module}.train()`: call it at the start of the training function.{disabled}")
                rel = related(m.eval_call, f"`{module}` is put in eval mode here")
                rel += related(m.step, f"`{opt}.step()` trains `{module}` in eval mode here")
                yield self.diagnostic(message, start, help=help, related=rel,
                                      fix=display_fix(f"Call `{module}.train()` at the start of training"),
                                      module=module, submodules=m.submodules, optimizer=opt)
                continue
            rel = related(m.step, f"`{opt}.step()` trains `{module}` in eval mode here") \
                if loc is not m.step else []
            yield self.diagnostic(message, loc, help=help, related=rel,
                                  fix=display_fix(f"Call `{module}.train()` before training"),
                                  module=module, submodules=m.submodules, optimizer=opt)


def _train_call_before_the_loop(ctx: Context, module: str, step: Location | None) -> Location | None:
    """The cell's `module.train()`, when it sits outside the loop that steps the optimizer."""
    source_map = ctx.source_map
    if source_map is None or step is None:
        return None
    call = source_map.find_call({"train"})
    if call is None or call.cell != step.cell or call.path != step.path or call.line >= step.line \
            or not (call.text or "").startswith(f"{module}.train(") or source_map.in_same_loop(call, step):
        return None
    return call


def _puts_its_argument_in_eval(ctx: Context, eval_call: Location) -> bool:
    """`def evaluate(model): model.eval()`: a helper that switches the model it is handed."""
    receiver = (eval_call.text or "").split(".", 1)[0]
    return ctx.source_map is not None and receiver in ctx.source_map.function_parameters(eval_call)
