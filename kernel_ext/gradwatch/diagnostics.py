"""The payload's data model: Diagnostic, Location, Fix and friends, and their JSON form.

Everything here is plain data (no torch, no IPython), so rules, reports and tests can build
and compare diagnostics without a kernel. The JSON shape is the public contract described in
``docs/payload.md`` and ``schema/diagnostics.schema.json``.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

# The project's documentation home for rule pages: every diagnostic's ``url`` (in the payload, the
# HTML report and the editor's links) is ``DOCS_BASE_URL + code + ".md"``. This is the one place
# to change it (a fork or a mirror); nothing else builds rule URLs. The same pages work offline:
# ``%gradwatch explain GW001`` in a notebook, ``python -m gradwatch rule GW001`` in a terminal.
DOCS_BASE_URL = "https://github.com/gradwatch/gradwatch/blob/main/docs/rules/"

# The payload schema's limits (schema/diagnostics.schema.json); ``to_json`` never exceeds them,
# whatever the user's code looks like (a 12,000-character line, a 3,000-character name).
MAX_TEXT = 2000  # message, help, related message, fix title
# An exception note is one line: the help joins it only when the whole note stays this short.
NOTE_WIDTH = 160
MAX_SOURCE = 10000  # location source, edit new_text
MAX_PATH = 4096
MAX_NAME = 100
MAX_ITEMS = 100  # related locations, fix edits
MAX_DIAGNOSTICS = 1000
ELLIPSIS = "\u2026"


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (code points, as JSON Schema counts), the last one
    an ellipsis when cut. A cut ``location.source`` is the start of the line, so an editor
    can still tell whether the line changed."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 0, "warning": 1, "info": 2}[self.value]


class Applicability(str, enum.Enum):
    """How sure a fix is, as in ruff: safe fixes keep the program's meaning."""

    SAFE = "safe"
    UNSAFE = "unsafe"
    DISPLAY_ONLY = "display-only"

    @property
    def words(self) -> str:
        """What the applicability means to the person reading a report ("display-only" is
        payload jargon): the same words in the text and HTML reports and in the editor."""
        return _APPLICABILITY_WORDS[self]


_APPLICABILITY_WORDS = {
    Applicability.SAFE: "safe fix",
    Applicability.UNSAFE: "fix that changes behaviour",
    Applicability.DISPLAY_ONLY: "suggestion",
}


@dataclass(frozen=True)
class Location:
    """A source range: 1-based lines and character columns, ``end_column`` exclusive.

    ``cell`` is the execution count of the notebook cell holding the code, ``path`` the file
    for code outside cells. ``source`` is the text of ``line``, so an editor can tell whether
    the range is stale.
    """

    line: int
    column: int
    end_line: int
    end_column: int
    source: str
    cell: int | None = None
    path: str | None = None

    def fits(self) -> bool:
        """Whether the payload can carry this location: one cut short would point elsewhere."""
        return ((self.path is None or len(self.path) <= MAX_PATH)
                and (self.cell is None or self.cell >= 0))

    def to_json(self) -> dict[str, Any]:
        # 1-based, and never ending before it starts (an editor refuses such a range)
        line, column = max(1, self.line), max(1, self.column)
        end_line, end_column = max(line, self.end_line), max(1, self.end_column)
        if end_line == line:
            end_column = max(column, end_column)
        return {
            "cell": self.cell,
            "path": self.path,
            "line": line,
            "column": column,
            "end_line": end_line,
            "end_column": end_column,
            "source": clip(self.source, MAX_SOURCE),
        }

    @property
    def text(self) -> str:
        """The flagged text when the range is on one line (else the rest of the first line)."""
        end = self.end_column if self.end_line == self.line else len(self.source) + 1
        return self.source[self.column - 1 : end - 1]

    def at(self, column: int, end_column: int | None = None) -> "Location":
        """A range on the same first line, e.g. an insertion point for a fix."""
        return dataclasses.replace(
            self, column=column, end_line=self.line,
            end_column=column if end_column is None else end_column,
        )

    def describe(self) -> str:
        where = f"cell [{self.cell}]" if self.cell is not None else (self.path or "<unknown>")
        return f"{where}, line {self.line}, col {max(1, self.column)}"


@dataclass(frozen=True)
class Related:
    location: Location
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"location": self.location.to_json(), "message": clip(self.message, MAX_TEXT)}


@dataclass(frozen=True)
class Edit:
    location: Location
    new_text: str

    def fits(self) -> bool:
        """Whether the payload can carry this edit whole (a cut edit would write broken code)."""
        return len(self.new_text) <= MAX_SOURCE and self.location.fits()

    def to_json(self) -> dict[str, Any]:
        return {"location": self.location.to_json(), "new_text": self.new_text}


@dataclass(frozen=True)
class Fix:
    title: str
    applicability: Applicability
    edits: tuple[Edit, ...] = ()

    def to_json(self) -> dict[str, Any]:
        applicability, edits = self.applicability, self.edits
        if len(edits) > MAX_ITEMS or not all(e.fits() for e in edits):
            # only a whole fix may be applied: one the payload cannot carry whole is advice
            applicability, edits = Applicability.DISPLAY_ONLY, ()
        return {
            "title": clip(self.title, MAX_TEXT),
            "applicability": applicability.value,
            "edits": [e.to_json() for e in edits],
        }


@dataclass
class Diagnostic:
    code: str
    name: str
    severity: Severity
    message: str
    location: Location | None
    related: list[Related] = field(default_factory=list)
    fix: Fix | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    # why it matters and what to do (ruff's ``help:``); the message says only what is wrong
    help: str | None = None
    # the tensors this finding gives a cause for (not in the payload): rules that defer to this
    # rule's code leave them out (see rules/registry.py)
    explains: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def url(self) -> str:
        return f"{DOCS_BASE_URL}{self.code}.md"

    def to_json(self) -> dict[str, Any]:
        location = self.location if self.location is not None and self.location.fits() else None
        related = [r for r in self.related if r.location.fits()][:MAX_ITEMS]
        return {
            "code": self.code,
            "name": self.name[:MAX_NAME].rstrip("-"),  # kebab-case: no ellipsis
            "severity": self.severity.value,
            "message": clip(self.message, MAX_TEXT),
            **({"help": clip(self.help, MAX_TEXT)} if self.help else {}),
            "location": location.to_json() if location else None,
            "related": [r.to_json() for r in related],
            "fix": self.fix.to_json() if self.fix else None,
            "url": self.url,
            "evidence": _jsonable(self.evidence),
        }

    def note(self) -> str:
        """One line for an exception's notes: the short message and where, and the help when
        the whole line stays within ``NOTE_WIDTH`` (the report below has it in any case)."""
        where = f" ({self.location.describe()})" if self.location else ""
        note = f"gradwatch {self.code}: {self.message}{where}"
        with_help = f"{note}; help: {self.help}" if self.help else note
        return with_help if len(with_help) <= NOTE_WIDTH and "\n" not in with_help else note

    def key(self) -> tuple:
        """Identity for de-duplication: the same rule at the same place is one finding."""
        loc = self.location
        return (self.code, loc and (loc.cell, loc.path, loc.line, loc.column), self.message)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
