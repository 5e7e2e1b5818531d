"""`Report`: the diagnostics of one watched cell, and their outputs.

One display output carries three views of the same data: the JSON payload for editors
(``application/vnd.gradwatch.diagnostics+json``), HTML (``report_html``: escapes every
user-derived string) and plain text.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any

from .diagnostics import MAX_DIAGNOSTICS, Diagnostic, clip
from .report_html import render as render_html

MIME_TYPE = "application/vnd.gradwatch.diagnostics+json"
PAYLOAD_VERSION = 1


class GradwatchWarning(UserWarning):
    """A gradwatch diagnostic, issued as a Python warning (``-W error`` turns it into one)."""


@dataclass
class Report:
    execution_count: int | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # findings that --select/--ignore hid: code -> how many (see `count_suppressed`)
    suppressed: dict[str, int] = field(default_factory=dict)

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

    def count_suppressed(self, events: Any, source_map: Any = None, *, select: set[str] | None = None,
                         ignore: set[str] | None = None) -> None:
        """Count what ``select``/``ignore`` hid from this report into ``suppressed``.

        The rules run once more on the same recorded events (cheap), all of them, and the
        findings of rules that were not selected (or were ignored) are counted; the report's
        own diagnostics (precedence resolved among the selected rules) stay as they are. Never
        raises: a rule that fails here was not going to be reported anyway.
        """
        from .rules import registry

        if select is None and not ignore:
            return
        kept = {r.code for r in registry.rules()
                if (select is None or r.code in select) and r.code not in (ignore or ())}
        try:
            every = registry.run(events, source_map)
        except Exception:
            return
        counts: dict[str, int] = {}
        for d in every:
            if d.code not in kept:
                more = d.evidence.get("more_not_shown", 0)
                counts[d.code] = counts.get(d.code, 0) + 1 + (more if isinstance(more, int) else 0)
        self.suppressed = dict(sorted(counts.items()))

    # --- views ---------------------------------------------------------------------------
    def summary(self) -> str:
        """``gradwatch: no problems found``, ``gradwatch: 2 problem(s)``, with what --select or
        --ignore hid: ``gradwatch: no problems found (2 ignored: GW001)``."""
        n = len(self.diagnostics)
        text = f"gradwatch: {n} problem(s)" if n else "gradwatch: no problems found"
        return text + self._suppressed_note()

    def _suppressed_note(self) -> str:
        if not self.suppressed:
            return ""
        return f" ({sum(self.suppressed.values())} ignored: {', '.join(sorted(self.suppressed))})"

    def to_text(self) -> str:
        if not self.diagnostics:
            return self.summary()
        lines = [self.summary()]
        for d in self.diagnostics:
            where = d.location.describe() if d.location else "-"
            lines.append(f"  {d.severity.value:<7} {d.code} {where}: {d.message}")
            if d.location is not None and d.location.source.strip():
                lines.append(f"      {d.location.source.strip()}")
            if d.help:
                lines.append(f"      help: {d.help}")
            if d.fix is not None:
                lines.append(f"      {d.fix.applicability.words}: {d.fix.title}")
        return "\n".join(lines)

    def to_html(self) -> str:
        return render_html(self)

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
