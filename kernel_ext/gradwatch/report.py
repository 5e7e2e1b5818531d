"""`Report`: the diagnostics of one watched cell, and their outputs.

One display output carries three views of the same data: the JSON payload for editors
(``application/vnd.gradwatch.diagnostics+json``), a compact HTML table and plain text. Every
user-derived string in the HTML is escaped.
"""

from __future__ import annotations

import html
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

from .diagnostics import MAX_DIAGNOSTICS, Diagnostic, clip

MIME_TYPE = "application/vnd.gradwatch.diagnostics+json"
PAYLOAD_VERSION = 1


class GradwatchWarning(UserWarning):
    """A gradwatch diagnostic, issued as a Python warning (``-W error`` turns it into one)."""


@dataclass
class Report:
    execution_count: int | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    events: Any = None

    def __len__(self) -> int:
        return len(self.diagnostics)

    def __iter__(self):
        return iter(self.diagnostics)

    @property
    def codes(self) -> list[str]:
        return [d.code for d in self.diagnostics]

    def to_payload(self) -> dict[str, Any]:
        from . import __version__

        count = self.execution_count
        return {
            "version": PAYLOAD_VERSION,
            "tool": {"name": "gradwatch", "version": clip(str(__version__), 64)},
            "cell": {"execution_count": count if isinstance(count, int) and count >= 0 else None},
            # the schema's limit; the rules cap each code at a few findings long before this
            "diagnostics": [d.to_json() for d in self.diagnostics[:MAX_DIAGNOSTICS]],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_payload(), **kwargs)

    # --- views ---------------------------------------------------------------------------
    def to_text(self) -> str:
        if not self.diagnostics:
            return "gradwatch: no problems found"
        lines = [f"gradwatch: {len(self.diagnostics)} problem(s)"]
        for d in self.diagnostics:
            where = d.location.describe() if d.location else "-"
            lines.append(f"  {d.severity.value:<7} {d.code} {where}: {d.message}")
            if d.location is not None and d.location.source.strip():
                lines.append(f"      {d.location.source.strip()}")
            if d.fix is not None:
                lines.append(f"      fix ({d.fix.applicability.value}): {d.fix.title}")
        return "\n".join(lines)

    def to_html(self) -> str:
        e = html.escape
        if not self.diagnostics:
            return "<div class='gradwatch'>gradwatch: no problems found</div>"
        rows = []
        for d in self.diagnostics:
            where = e(d.location.describe()) if d.location else "-"
            fix = f"<br><small>fix: {e(d.fix.title)}</small>" if d.fix else ""
            rows.append(
                f"<tr><td>{e(d.severity.value)}</td>"
                f"<td><a href='{e(d.url, quote=True)}' target='_blank' rel='noopener'>{e(d.code)}</a></td>"
                f"<td>{where}</td><td>{e(d.message)}{fix}</td></tr>")
        return ("<table class='gradwatch'><thead><tr><th>severity</th><th>code</th>"
                "<th>where</th><th>message</th></tr></thead><tbody>"
                + "".join(rows) + "</tbody></table>")

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        return {MIME_TYPE: self.to_payload(), "text/html": self.to_html(),
                "text/plain": self.to_text()}

    def __repr__(self) -> str:
        return self.to_text()

    def warn(self) -> None:
        for d in self.diagnostics:
            loc = d.location
            filename = (loc.path or f"<cell [{loc.cell}]>") if loc else "<gradwatch>"
            warnings.warn_explicit(f"{d.code} {d.message}", GradwatchWarning, filename,
                                   loc.line if loc else 0, module="gradwatch")
