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


def precedence_order(codes: Iterable[str]) -> list[type[Rule]]:
    """The rules of ``codes`` so that each runs after the rules it defers to (among ``codes``):
    a topological order, ties broken by code, so renumbering a rule changes nothing else."""
    table = by_code()
    wanted = set(codes)
    order: list[type[Rule]] = []
    placed: set[str] = set()
    visiting: set[str] = set()

    def place(code: str) -> None:
        if code in placed:
            return
        if code in visiting:
            raise ValueError(f"rules defer to each other in a cycle through {code}")
        visiting.add(code)
        for first in sorted(table[code].defers_to & wanted):
            place(first)
        visiting.discard(code)
        placed.add(code)
        order.append(table[code])

    for code in sorted(wanted):
        place(code)
    return order


def run(events: Events, source_map: SourceMap | None = None, *, select: set[str] | None = None,
        ignore: set[str] | None = None) -> list[Diagnostic]:
    """Run the selected rules (``select`` minus ``ignore``) and resolve their precedence.

    A rule that defers to other codes sees, in ``ctx.explained``, the tensors that those rules'
    findings explain, but only for rules that are selected too: with ``--select GW006`` the
    missing gradients a ``.detach()`` causes are GW006's to report; by default GW002 names the
    cut and GW006 stays quiet about those tensors.
    """
    codes = {r.code for r in rules() if (select is None or r.code in select) and r.code not in (ignore or ())}
    ctx = Context(events, source_map)
    emitted: dict[str, list[Diagnostic]] = {}
    seen: set[tuple] = set()
    for rule_cls in precedence_order(codes):
        rule = rule_cls()
        ctx.explained = frozenset(name for code in rule.defers_to for d in emitted.get(code, ())
                                  for name in d.explains)
        found = emitted.setdefault(rule.code, [])
        at: dict[tuple, Diagnostic] = {}
        for diag in rule.check(ctx) or ():
            loc = diag.location
            place = (loc.cell, loc.path, loc.line, loc.column, loc.end_column) if loc else None
            if rule.one_per_place and place is not None and place in at:
                first = at[place]
                first.evidence["same_place"] = first.evidence.get("same_place", 1) + 1
                first.explains |= diag.explains
                continue
            if diag.key() not in seen:
                seen.add(diag.key())
                found.append(diag)
                if place is not None:
                    at[place] = diag
    out: list[Diagnostic] = []
    for found in emitted.values():
        if len(found) > MAX_PER_RULE:
            found[MAX_PER_RULE - 1].evidence["more_not_shown"] = len(found) - MAX_PER_RULE
        out += found[:MAX_PER_RULE]
    out.sort(key=lambda d: (d.severity.rank,) + _where(d))
    return out


def wants_input_scales(events: Events) -> bool:
    """Whether a rule that may blame unscaled data reports on these events: only then is the
    data's scale worth measuring (one host read per input, once per cell)."""
    ctx = Context(events)
    return any(next(iter(rule().check(ctx) or ()), None) is not None
               for rule in rules() if rule.blames_unscaled_data)


def _where(d: Diagnostic) -> tuple:
    loc = d.location
    if loc is None:
        return (1, 0, "", 0, 0)
    return (0, loc.cell or 0, loc.path or "", loc.line, loc.column)


def internal_diagnostic(message: str) -> Diagnostic:
    from .gw900_internal_error import InternalError

    rule = InternalError()
    return rule.diagnostic(
        "gradwatch hit an internal error and checked this cell only partly", None,
        help=f"The error: {message}. Your code ran normally; please report this.",
        severity=Severity.WARNING, error=message)
