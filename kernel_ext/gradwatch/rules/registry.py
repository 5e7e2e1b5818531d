"""Finds the rule modules, expands ``--select/--ignore`` codes, runs the rules on events."""

from __future__ import annotations

import importlib
import pkgutil
import re
from functools import lru_cache
from typing import Iterable

from ..diagnostics import Diagnostic, Severity
from ..events import Events
from ..locate import SourceMap
from .base import Context, Rule

MAX_PER_RULE = 5
_MODULE = re.compile(r"^gw\d{3}_\w+$")


class UnknownRuleCode(ValueError):
    pass


@lru_cache(maxsize=1)
def rules() -> tuple[type[Rule], ...]:
    found = []
    for info in pkgutil.iter_modules(_package_path()):
        if _MODULE.match(info.name):
            module = importlib.import_module(f"{__package__}.{info.name}")
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, Rule) and value is not Rule \
                        and value.__module__ == module.__name__:
                    found.append(value)
    return tuple(sorted(found, key=lambda r: r.code))


def _package_path() -> list[str]:
    import os
    return [os.path.dirname(__file__)]


def by_code() -> dict[str, type[Rule]]:
    return {r.code: r for r in rules()}


def expand(codes: Iterable[str]) -> set[str]:
    """``["GW0", "GW105"]`` -> the codes they name; unknown codes are an error."""
    known = by_code()
    result: set[str] = set()
    for raw in codes:
        for code in filter(None, (c.strip().upper() for c in raw.split(","))):
            matched = {k for k in known if k.startswith(code)} if code.startswith("GW") else set()
            if not matched:
                raise UnknownRuleCode(
                    f"unknown rule code {code!r}; known codes: {', '.join(sorted(known))}")
            result |= matched
    return result


def run(events: Events, source_map: SourceMap | None = None, *, select: set[str] | None = None,
        ignore: set[str] | None = None) -> list[Diagnostic]:
    ctx = Context(events, source_map)
    out: list[Diagnostic] = []
    seen: set[tuple] = set()
    # Rules that find causes run first; fallbacks only report what no cause explained.
    for rule_cls in sorted(rules(), key=lambda r: r.fallback):
        rule = rule_cls()
        found = 0
        for diag in rule.check(ctx) or ():
            if diag.key() in seen:
                continue
            seen.add(diag.key())
            found += 1
            if found > MAX_PER_RULE:
                continue
            if (select is None or diag.code in select) and diag.code not in (ignore or ()):
                out.append(diag)
        if found > MAX_PER_RULE:
            for diag in reversed(out):
                if diag.code == rule.code:
                    diag.evidence["more_not_shown"] = found - MAX_PER_RULE
                    break
    out.sort(key=lambda d: (d.severity.rank,) + _where(d))
    return out


def _where(d: Diagnostic) -> tuple:
    loc = d.location
    if loc is None:
        return (1, 0, "", 0, 0)
    return (0, loc.cell or 0, loc.path or "", loc.line, loc.column)


def internal_diagnostic(message: str) -> Diagnostic:
    from .gw900_internal_error import InternalError

    rule = InternalError()
    return rule.diagnostic(
        f"gradwatch hit an internal error and checked this cell only partly ({message}); "
        "your code ran normally — please report this", None, severity=Severity.WARNING,
        error=message)
