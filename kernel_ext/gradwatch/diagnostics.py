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

DOCS_BASE_URL = "https://github.com/gradwatch/gradwatch/blob/main/docs/rules/"


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

    def to_json(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "source": self.source,
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
        return f"{where}, line {self.line}"


@dataclass(frozen=True)
class Related:
    location: Location
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"location": self.location.to_json(), "message": self.message}


@dataclass(frozen=True)
class Edit:
    location: Location
    new_text: str

    def to_json(self) -> dict[str, Any]:
        return {"location": self.location.to_json(), "new_text": self.new_text}


@dataclass(frozen=True)
class Fix:
    title: str
    applicability: Applicability
    edits: tuple[Edit, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "applicability": self.applicability.value,
            "edits": [e.to_json() for e in self.edits],
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
    # the tensors this finding gives a cause for (not in the payload): rules that defer to this
    # rule's code leave them out (see rules/registry.py)
    explains: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def url(self) -> str:
        return f"{DOCS_BASE_URL}{self.code}.md"

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "severity": self.severity.value,
            "message": self.message,
            "location": self.location.to_json() if self.location else None,
            "related": [r.to_json() for r in self.related],
            "fix": self.fix.to_json() if self.fix else None,
            "url": self.url,
            "evidence": _jsonable(self.evidence),
        }

    def note(self) -> str:
        """One line for an exception's notes and for plain-text output."""
        where = f" ({self.location.describe()})" if self.location else ""
        return f"gradwatch {self.code}: {self.message}{where}"

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
