"""What a rule is, and the context it checks.

A rule is a class with a ``code``, a kebab-case ``name``, a default ``severity`` and a
``check(ctx)`` that yields diagnostics. Its module docstring (sections *What it does*, *Why is
this bad?*, *Example*, *Use instead*) is its documentation page.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable, Iterator, TypeVar

from ..diagnostics import Applicability, Diagnostic, Edit, Fix, Location, Related, Severity
from ..events import Events
from ..locate import SourceMap
from ..measurements import Measurement

M = TypeVar("M", bound=Measurement)


class Context:
    """The events of a cell, plus what the rules a rule defers to have explained.

    ``explained`` is set by the registry before each rule runs: the tensor names that the
    findings of the (selected) rules in its ``defers_to`` give a cause for. Rules read it and
    never write it; a finding says what it explains with ``explains=``.
    """

    def __init__(self, events: Events, source_map: SourceMap | None = None) -> None:
        self.events = events
        self.source_map = source_map
        self.explained: frozenset[str] = frozenset()

    def flows(self) -> Iterator[tuple[Any, Any]]:
        for event in self.events.backwards:
            if event.flow is not None:
                yield event, event.flow

    def measured(self, kind: type[M]) -> list[M]:
        """The per-step monitors' measurements of one kind (``Events.measurements``)."""
        return [m for m in self.events.measurements if isinstance(m, kind)]

    @staticmethod
    def trained_by_this_step(event: Any, flow: Any, names: Iterable[str]) -> list[str]:
        """Of ``names`` (cut off in ``event``'s backward), those that the optimizer stepped with
        this backward's gradients trains. A GAN's discriminator step cuts the generator's output
        on purpose: the generator's parameters are not what that step's optimizer trains.
        Tensors in no optimizer (manual updates), and backward calls that fed no step, keep all."""
        facts = {f.name: f for f in flow.unreached}
        out = []
        for name in names:
            fact = facts.get(name)
            if fact is None or not fact.owner_keys or not event.consumers or \
                    any(k in event.consumers for k in fact.owner_keys):
                out.append(name)
        return out

    def unscaled_input(self, threshold: float = 50.0, targets_first: bool = False) -> Any:
        """The data tensor with the largest values, if they are far from unit scale: the model's
        inputs first (they make steps overshoot), or with ``targets_first`` the targets (which a
        model with unit-scale outputs cannot reach)."""
        big = [i for i in self.events.inputs if i.max_abs >= threshold and i.created is not None]
        return max(big, key=lambda i: (i.target == targets_first, i.max_abs)) if big else None

    def backward_location(self) -> Location | None:
        for event in self.events.backwards:
            if event.location is not None:
                return event.location
        return None


class Rule:
    code: str = ""
    name: str = ""
    severity: Severity = Severity.WARNING
    summary: str = ""  # one line for the rule table
    # Codes whose findings supersede this rule's: the tensors they explain are in
    # ``ctx.explained`` when this rule runs (and those rules run first).
    defers_to: frozenset[str] = frozenset()
    # findings at one place are one finding (a loss that diverges for several optimizers)
    one_per_place: bool = False
    # its message blames unscaled data when the data is far from unit scale: the session
    # measures the data (``Events.inputs``) only when such a rule reports
    blames_unscaled_data: bool = False

    @classmethod
    def doc(cls) -> str:
        return sys.modules[cls.__module__].__doc__ or ""

    def check(self, ctx: Context) -> Iterable[Diagnostic]:
        raise NotImplementedError

    def diagnostic(self, message: str, location: Location | None, *, help: str | None = None,
                   related: Iterable[Related] = (), fix: Fix | None = None,
                   severity: Severity | None = None, explains: Iterable[str] = (),
                   **evidence: Any) -> Diagnostic:
        """``message`` says what is wrong, naming the user's variable (about 80 characters);
        ``help`` why it matters and what to do, as ruff's ``help:`` line."""
        return Diagnostic(code=self.code, name=self.name, severity=severity or self.severity,
                          message=message, help=help, location=location, related=list(related), fix=fix,
                          evidence=evidence, explains=frozenset(explains))


def related(location: Location | None, message: str) -> list[Related]:
    return [Related(location, message)] if location is not None else []


def names(items: Iterable[str], limit: int = 4) -> str:
    """`w`, `b` and 3 more."""
    items = list(dict.fromkeys(items))
    shown = ", ".join(f"`{n}`" for n in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def short_names(items: Iterable[str], width: int = 40) -> str:
    """`w`, `b` and 3 more, with as many names as fit in about ``width`` characters (at least
    one): for a short message; ``all_names`` says the rest in the help."""
    items = list(dict.fromkeys(items))
    shown = 1
    while shown < min(len(items), 4) and len(names(items[: shown + 1], shown + 1)) <= width:
        shown += 1
    return names(items, shown)


def all_names(items: Iterable[str], width: int = 40) -> str:
    """The names ``short_names`` left out, as a sentence for the help (else nothing)."""
    items = list(dict.fromkeys(items))
    return "" if short_names(items, width) == names(items) else f" All of them: {names(items)}."


def them(items: list, one: str = "it", many: str = "them") -> str:
    return one if len(items) == 1 else many


def insert_fix(title: str, location: Location | None, column: int, text: str,
               applicability: Applicability = Applicability.SAFE) -> Fix | None:
    if location is None:
        return None
    return Fix(title, applicability, (Edit(location.at(column), text),))


def replace_fix(title: str, location: Location | None, text: str,
                applicability: Applicability = Applicability.UNSAFE) -> Fix | None:
    if location is None or location.end_line != location.line:
        return None
    return Fix(title, applicability, (Edit(location, text),))


def display_fix(title: str) -> Fix:
    return Fix(title, Applicability.DISPLAY_ONLY, ())


__all__ = ["Applicability", "Context", "Diagnostic", "Edit", "Fix", "Location", "Related",
           "Rule", "Severity", "all_names", "display_fix", "insert_fix", "names", "related",
           "replace_fix", "short_names", "them"]
