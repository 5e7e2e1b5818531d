"""## What it does
Reports that gradwatch itself failed while watching a cell. The cell ran normally; gradwatch
checked it only partly.

## Why is this bad?
It is not a problem in your code, but the diagnostics for that cell may be incomplete.

## Example
A gradwatch bug, or an unusual object it could not inspect.

## Use instead
Please report the message shown. Use `%%gradwatch --ignore GW900` to hide it meanwhile.
"""

from __future__ import annotations

from .base import Context, Rule, Severity


class InternalError(Rule):
    code = "GW900"
    name = "internal-error"
    severity = Severity.WARNING
    summary = "gradwatch's own fault; the cell ran normally."

    def check(self, ctx: Context):
        return ()
