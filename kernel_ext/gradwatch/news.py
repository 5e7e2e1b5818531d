"""News while a watched cell runs: an error-level finding said at once, not when the cell ends.

A long training loop can run for minutes after its loss became NaN. The monitors call
``Watch.tell(code, message)`` at the points where they read the host anyway (``grad_stats``'s
non-finite flag, ``step_order``'s step order: no device sync of their own); the session passes
each code once to the `OnFinding` callback that the magic gave it. The magic's `NewsPrinter`
prints one line to stderr, or, with ``--fail-fast``, raises `FailFastError` there.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

# (rule code, what was seen: one short sentence, with where when known)
OnFinding = Callable[[str, str], None]


class FailFastError(BaseException):
    """Raised by ``%%gradwatch --fail-fast`` at the first error-level finding, from the call in
    the cell that revealed it (a ``backward()`` or ``step()``); the report follows as usual.

    A ``BaseException``, as ``KeyboardInterrupt`` and pytest's ``Failed``: a training loop's
    ``except Exception`` does not swallow it, and neither do gradwatch's own guards."""


class NewsPrinter:
    """The magic's `OnFinding`: one line on stderr per selected error-level rule, or a raise."""

    def __init__(self, *, select: set[str] | None, ignore: set[str], fail_fast: bool,
                 stream: TextIO | None = None) -> None:
        self._select, self._ignore, self._fail_fast = select, ignore, fail_fast
        self._stream = stream

    def __call__(self, code: str, message: str) -> None:
        if not self._reported(code):
            return
        line = f"gradwatch {code}: {message}"
        if self._fail_fast:
            raise FailFastError(f"{line}; --fail-fast stopped the cell here")
        try:
            print(f"{line}; the full report follows when the cell ends",
                  file=self._stream or sys.stderr, flush=True)
        except Exception:  # a closed or odd stream: the report still comes at the end
            pass

    def _reported(self, code: str) -> bool:
        """Whether the report would show ``code`` (--select/--ignore) at error level."""
        from .diagnostics import Severity
        from .rules import registry

        if (self._select is not None and code not in self._select) or code in self._ignore:
            return False
        rule = next((r for r in registry.rules() if r.code == code), None)
        return rule is not None and rule.severity is Severity.ERROR
