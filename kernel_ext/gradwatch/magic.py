"""``%%gradwatch`` and ``%gradwatch on|off|status``: argument parsing, running the cell through
IPython's own machinery, and showing the report. Nothing about torch in here."""

from __future__ import annotations

import ast
import sys
import warnings
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from . import _set_last_report
from .locate import SourceMap, history_cell
from .report import MIME_TYPE, Report

_OPTIONS = "--select CODES, --ignore CODES, --strict, --quiet, --trace-steps N"


class StrictModeError(Exception):
    """Raised after a ``%%gradwatch --strict`` cell that produced warnings or errors."""


@magics_class
class GradwatchMagics(Magics):
    shell: Any  # the InteractiveShell (Magics types it Optional: these magics always have one)

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self._auto: dict[str, Any] | None = None  # options of `%gradwatch on`
        self._auto_session: Any = None

    @magic_arguments()
    @argument("action", nargs="?", choices=["on", "off", "status"],
              help="Line magic only: watch every following cell (on), stop (off), or show the state.")
    @argument("--select", action="append", metavar="CODES",
              help="Only report these rule codes (comma-separated; prefixes such as GW0 allowed).")
    @argument("--ignore", action="append", metavar="CODES",
              help="Do not report these rule codes (comma-separated; prefixes allowed).")
    @argument("--strict", action="store_true",
              help="Raise StrictModeError after the cell if any warning or error was found.")
    @argument("--quiet", action="store_true",
              help="Attach the diagnostics payload without the visible table.")
    @argument("--trace-steps", type=int, default=2, metavar="N",
              help="How many backward() calls run with full provenance tracing (default 2).")
    @line_cell_magic
    def gradwatch(self, line: str, cell: str | None = None):
        """Diagnose why gradients do not reach your parameters.

        As a cell magic, ``%%gradwatch`` runs the cell while watching its ``backward()``
        calls, the forward pass and the optimizers, then shows the diagnostics. As a line
        magic, ``%gradwatch on`` watches every following cell.
        """
        __tracebackhide__ = True
        args = self._parse(line)
        if cell is None:
            return self._line(args)
        if args.action:
            raise UsageError("%%gradwatch takes no on/off/status; use the line magic %gradwatch")
        return self._cell(args, line, cell)

    # --- arguments ----------------------------------------------------------------------------
    def _parse(self, line: str):
        from .rules import registry

        try:
            args = parse_argstring(self.gradwatch, line)
        except UsageError as exc:
            raise UsageError(f"{exc}. Valid options: {_OPTIONS}") from None
        try:
            args.select_codes = registry.expand(args.select) if args.select else None
            args.ignore_codes = registry.expand(args.ignore) if args.ignore else set()
        except registry.UnknownRuleCode as exc:
            raise UsageError(str(exc)) from None
        if args.trace_steps < 0:
            raise UsageError("--trace-steps must be 0 or more")
        return args

    # --- %%gradwatch ---------------------------------------------------------------------------
    def _cell(self, args, line: str, cell: str):
        __tracebackhide__ = True
        shell = self.shell
        number = _running_cell_number(shell)
        raw = history_cell(shell, number) if number is not None else None
        if not raw or not raw.lstrip().startswith("%%gradwatch"):
            raw = f"%%gradwatch {line}".rstrip() + "\n" + cell
        header, _, _ = raw.partition("\n")
        transformed = shell.transform_cell(cell)
        # Compile with one empty line in front, so that line numbers are the editor's (the
        # %%gradwatch line is line 1) in tracebacks, code positions and diagnostics.
        code_text = "\n" + transformed
        filename = shell.compile.cache(header + "\n" + transformed, number, raw_code=raw)
        tree = shell.compile.ast_parse(code_text, filename=filename)  # SyntaxError as usual

        source_map = SourceMap(shell)
        source_map.register_cell(filename, number, raw, code_text)
        session = self._session(args, source_map, transformed, number)
        if session is None:  # gradwatch could not start: run the cell plainly
            return self._execute(tree, filename)
        report = session.report
        try:
            session.__enter__()
        except Exception as exc:  # gradwatch's fault: run the cell unwatched
            warnings.warn(f"gradwatch could not watch this cell and ran it unwatched: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
            return self._execute(tree, filename)
        try:
            self._execute(tree, filename)
        except BaseException as exc:
            session.__exit__(type(exc), exc, exc.__traceback__)
            raise
        else:
            session.__exit__(None, None, None)
        finally:
            self._show(report, args.quiet)
        if args.strict and any(d.severity.value in ("error", "warning") for d in report):
            raise StrictModeError(
                f"gradwatch --strict: {len(report)} problem(s): " + ", ".join(report.codes))

    def _session(self, args, source_map: SourceMap, code: str, number: int | None):
        try:
            from .session import Watch

            return Watch(select=args.select_codes, ignore=args.ignore_codes,
                         trace_steps=args.trace_steps, shell=self.shell, source_map=source_map,
                         namespace=self.shell.user_ns, code=code, execution_count=number,
                         warn=False)
        except Exception as exc:  # gradwatch's fault: never the user's cell's
            warnings.warn(f"gradwatch could not start and ran the cell unwatched: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
            return None

    def _execute(self, tree: ast.Module, filename: str) -> None:
        """Run the cell like IPython does: statements, then the last expression displayed."""
        __tracebackhide__ = True
        shell = self.shell
        body = list(tree.body)
        last = body.pop() if body and isinstance(body[-1], ast.Expr) else None
        flags = shell.compile.flags
        glob, loc = shell.user_global_ns, shell.user_ns
        if body:
            exec(compile(ast.Module(body, type_ignores=[]), filename, "exec", flags=flags,
                         dont_inherit=True), glob, loc)
        if last is not None:
            exec(compile(ast.Interactive([last]), filename, "single", flags=flags,
                         dont_inherit=True), glob, loc)

    def _show(self, report: Report, quiet: bool) -> None:
        _set_last_report(report)
        try:
            if quiet:
                display({MIME_TYPE: report.to_payload()}, raw=True)
            else:
                display(report)
        except Exception as exc:  # never hide the user's own exception behind ours
            print(f"gradwatch could not display its report: {exc}", file=sys.stderr)

    # --- %gradwatch on|off|status ----------------------------------------------------------------
    def _line(self, args):
        if args.action in (None, "status"):
            state = "on" if self._auto is not None else "off"
            print(f"gradwatch is {state}" + (" for every cell" if state == "on" else ""))
            return None
        if args.action == "off":
            self._auto = None
            return None
        self._auto = {"select": args.select_codes, "ignore": args.ignore_codes,
                      "trace_steps": args.trace_steps, "quiet": args.quiet}
        return None

    def pre_run_cell(self, info: Any) -> None:
        if self._auto is None or self._auto_session is not None:
            return
        raw = getattr(info, "raw_cell", "") or ""
        if raw.lstrip().startswith("%%gradwatch") or raw.lstrip().startswith("%gradwatch"):
            return
        from types import SimpleNamespace

        args = SimpleNamespace(select_codes=self._auto["select"], ignore_codes=self._auto["ignore"],
                               trace_steps=self._auto["trace_steps"])
        session = self._session(args, SourceMap(self.shell), raw, None)
        if session is None:
            return
        try:
            session.__enter__()
            self._auto_session = session
        except Exception as exc:
            warnings.warn(f"gradwatch could not watch this cell: {exc}", RuntimeWarning, stacklevel=1)

    def post_run_cell(self, result: Any) -> None:
        session, self._auto_session = self._auto_session, None
        if session is None:
            return
        error = getattr(result, "error_in_exec", None)
        session.__exit__(type(error) if error else None, error, None)
        report = session.report
        report.execution_count = getattr(result, "execution_count", None)
        if report.diagnostics or session.events.n_backward:
            self._show(report, bool(self._auto and self._auto["quiet"]))


def _running_cell_number(shell: Any) -> int | None:
    """The execution count the notebook shows for the cell running now.

    IPython 8 increments ``execution_count`` after a cell, IPython 9 before it; the file name
    the running cell was compiled under maps to its number either way.
    """
    names = getattr(shell.compile, "_filename_map", {})
    frame = sys._getframe(1)
    while frame is not None:
        number = names.get(frame.f_code.co_filename)
        if number is not None:
            return number
        frame = frame.f_back
    return None


def _syntax_errors_as_plain_cells(lines: list[str]) -> list[str]:
    """An input transformer: a ``%%gradwatch`` cell whose body does not parse becomes a plain
    cell (the magic line blanked), so IPython reports the SyntaxError exactly as it would
    without the magic — same line, same traceback — and nothing runs."""
    if not lines or not lines[0].startswith("%%gradwatch"):
        return lines
    shell = _magics.shell if _magics is not None else None
    body = "".join(lines[1:])
    try:
        ast.parse(shell.transform_cell(body) if shell is not None else body)
    except SyntaxError:
        return ["\n"] + lines[1:]
    except Exception:
        pass
    return lines


_magics: GradwatchMagics | None = None


def load(shell: Any) -> None:
    global _magics
    if _magics is not None and _magics.shell is shell:
        return
    _magics = GradwatchMagics(shell)
    shell.register_magics(_magics)
    shell.input_transformers_cleanup.append(_syntax_errors_as_plain_cells)
    shell.events.register("pre_run_cell", _magics.pre_run_cell)
    shell.events.register("post_run_cell", _magics.post_run_cell)


def unload(shell: Any) -> None:
    global _magics
    magics, _magics = _magics, None
    if magics is None:
        return
    if magics._auto_session is not None:
        magics.post_run_cell(None)
    magics._auto = None
    for event, fn in (("pre_run_cell", magics.pre_run_cell), ("post_run_cell", magics.post_run_cell)):
        try:
            shell.events.unregister(event, fn)
        except ValueError:
            pass
    if _syntax_errors_as_plain_cells in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.remove(_syntax_errors_as_plain_cells)
    for kind in ("line", "cell"):
        shell.magics_manager.magics[kind].pop("gradwatch", None)
    shell.magics_manager.registry.pop(type(magics).__name__, None)
