"""A watched cell's exception, shown as IPython shows it without gradwatch.

IPython shows a cell's exception from the ``except`` clause of ``InteractiveShell.run_code``;
the seam it offers there is ``set_custom_exc`` (``custom_exceptions`` and ``CustomTB``). While
a watched cell may fail, `TracebackHandler` is that handler, armed for one exception. It

* lets the magic finish first (``%gradwatch on`` concludes its session there, so the exception
  gets its "gradwatch GWxxx" note and the report comes before the traceback, as with
  ``%%gradwatch``), and
* shows the traceback without gradwatch's frames: the ``run_cell_magic`` line and the magic's
  own frames in front of the cell's code, and the wrappers around ``backward()``, ``step()``
  and the rest in between (IPython would show them as ``[... skipping hidden N frame]``).

Everything else (another handler the user set, errors before the cell runs, a cell that a
watched cell runs) is shown exactly as IPython would show it. Nothing holds the exception
after the cell: `disarm` runs at every cell's end.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import CodeType, FrameType, TracebackType
from typing import Any

_PACKAGE = __package__ or "gradwatch"
# What IPython's `_run_cell` shows for an exception raised while it parses a cell (in front of
# `run_code`); the handler is asked there too, and must answer as IPython would.
_PARSE_ERRORS = (OverflowError, SyntaxError, ValueError, TypeError, MemoryError)


class TracebackHandler:
    """IPython's custom exception handler while one watched cell runs (see the module)."""

    def __init__(self, shell: Any) -> None:
        self._shell = shell
        self._saved: tuple[Any, Any] | None = None  # the shell's own (custom_exceptions, CustomTB)
        self._exception: BaseException | None = None  # only this one; None: any of the cell's
        self._runner: CodeType | None = None
        self._before_show: Callable[[BaseException], None] | None = None

    @property
    def armed(self) -> bool:
        return self._saved is not None

    def arm(self, *, exception: BaseException | None = None, runner: CodeType | None = None,
            before_show: Callable[[BaseException], None] | None = None) -> None:
        """Handle ``exception`` (None: the next exception of the top-level cell): first call
        ``before_show`` with it, then show it without gradwatch's frames, and without the frames
        in front of the code that ``runner`` (the magic's function that runs the body) ran."""
        shell = self._shell
        if self._saved is None:
            self._saved = (shell.custom_exceptions, shell.CustomTB)
        self._exception, self._runner, self._before_show = exception, runner, before_show
        shell.custom_exceptions = (BaseException,)
        shell.CustomTB = self._handle

    def disarm(self) -> None:
        saved, self._saved = self._saved, None
        self._exception = self._before_show = None
        if saved is None:
            return
        shell = self._shell
        if shell.CustomTB == self._handle:  # not if someone set a handler of their own since
            shell.custom_exceptions, shell.CustomTB = saved

    # --- the handler ---------------------------------------------------------------------------
    def _handle(self, etype: type[BaseException], value: BaseException, tb: TracebackType | None,
                tb_offset: int | None = None) -> None:
        saved = self._saved or ((), None)
        from_run_code = _called_from_run_code(sys._getframe(1))
        ours = from_run_code and (value is self._exception if self._exception is not None
                                  else _run_code_depth(sys._getframe(1)) == 1)
        if not ours:  # as IPython shows it without this handler; stay armed for the cell's own
            return self._show_as_ipython(saved, etype, value, tb, from_run_code)
        before_show, runner = self._before_show, self._runner
        self.disarm()
        if before_show is not None:
            try:
                before_show(value)
            except Exception as exc:  # never hide the user's exception behind ours
                print(f"gradwatch could not conclude this cell: {type(exc).__name__}: {exc}", file=sys.stderr)
        try:
            plain = without_gradwatch_frames(tb, runner)
        except Exception:  # gradwatch's fault: the traceback as it is
            plain = tb
        return self._show_as_ipython(saved, etype, value, plain, True)

    def _show_as_ipython(self, saved: tuple[Any, Any], etype: type[BaseException], value: BaseException,
                         tb: TracebackType | None, from_run_code: bool) -> None:
        shell = self._shell
        custom_exceptions, custom_tb = saved
        if custom_exceptions and isinstance(value, custom_exceptions):
            return custom_tb(etype, value, tb)
        if from_run_code:
            return shell.showtraceback((etype, value, tb), running_compiled_code=True)
        # raised while IPython parsed the cell (`_run_cell`), before any of it ran
        if isinstance(value, IndentationError):
            return shell.showindentationerror()
        if isinstance(value, _PARSE_ERRORS):
            return shell.showsyntaxerror()
        return shell.showtraceback((etype, value, tb))


def without_gradwatch_frames(tb: TracebackType | None, runner: CodeType | None) -> TracebackType | None:
    """A copy of ``tb`` (whose first entry is IPython's ``run_code``) without gradwatch's frames
    and, given ``runner``, without the frames from ``run_code`` to ``runner``'s, which ran the
    cell's body (all of them if the exception did not come from the body: an error of the
    magic's own, such as ``StrictModeError``, shows as its one line). The exception's own
    traceback is left as it is."""
    if tb is None:
        return None
    entries: list[TracebackType] = []
    entry: TracebackType | None = tb
    while entry is not None:
        entries.append(entry)
        entry = entry.tb_next
    head, rest = entries[0], entries[1:]
    if runner is not None:
        start = next((i + 1 for i, e in enumerate(rest) if e.tb_frame.f_code is runner), len(rest))
        rest = rest[start:]
    kept = [head] + [e for e in rest if not _is_gradwatch(e.tb_frame)]
    if len(kept) == len(entries):
        return tb
    chain: TracebackType | None = None
    for e in reversed(kept):
        chain = TracebackType(chain, e.tb_frame, e.tb_lasti, e.tb_lineno)
    return chain


def _is_gradwatch(frame: FrameType) -> bool:
    name = frame.f_globals.get("__name__")
    return isinstance(name, str) and (name == _PACKAGE or name.startswith(_PACKAGE + "."))


def _called_from_run_code(frame: FrameType | None) -> bool:
    # by name: a shell class of a kernel may define its own `run_code`
    return frame is not None and frame.f_code.co_name == "run_code"


def _run_code_depth(frame: FrameType | None) -> int:
    """How many cells run on this stack (a watched cell can run another: ``%rerun``)."""
    depth = 0
    while frame is not None:
        depth += _called_from_run_code(frame)
        frame = frame.f_back
    return depth
