"""``%%gradwatch`` and ``%gradwatch on|off|status|rules|explain``: argument parsing, running the cell through
IPython's own machinery, and showing the report. Nothing about torch in here."""

from __future__ import annotations

import argparse
import ast
import inspect
import sys
import warnings
import weakref
from typing import TYPE_CHECKING, Any, NamedTuple

from IPython.core.displayhook import DisplayHook
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import MagicHelpFormatter, argument, kwds, magic_arguments, parse_argstring
from IPython.display import display

from . import _set_last_report
from .cell_traceback import TracebackHandler
from .locate import SourceMap, history_cell
from .news import NewsPrinter
from .report import MIME_TYPE, Report

if TYPE_CHECKING:
    from .session import Watch

_OPTIONS = "--select CODES, --ignore CODES, --strict, --fail-fast, --quiet, --trace-steps N"
_TOP_LEVEL_AWAIT = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
# Statements that `ast_node_interactivity = "last_expr_or_assign"` displays (as IPython).
_ASSIGN_NODES = (ast.AugAssign, ast.AnnAssign, ast.Assign)
_SINGLE_TARGET_NODES = (ast.AugAssign, ast.AnnAssign)
# The sessions that watch a cell (%%gradwatch or %gradwatch on); see `watches_cell`.
_cell_sessions: "weakref.WeakSet[Any]" = weakref.WeakSet()


class StrictModeError(Exception):
    """Raised after a ``%%gradwatch --strict`` cell that produced warnings or errors."""


class _Help(MagicHelpFormatter):
    """The magics' ``?`` help: a plain "Usage:" line (IPython's default writes an RST ``::``
    block and one ``%`` before the name, wrong for a cell magic)."""

    def add_usage(self, usage, actions, groups, prefix=None):
        argparse.RawDescriptionHelpFormatter.add_usage(self, usage, actions, groups, "Usage: ")


def _options(func: Any) -> Any:
    """The options that ``%%gradwatch`` and ``%gradwatch on`` share."""
    for deco in reversed([
        argument("--select", action="append", metavar="CODES",
                 help="Only report these rule codes (comma-separated; prefixes such as GW0 allowed)."),
        argument("--ignore", action="append", metavar="CODES",
                 help="Do not report these rule codes (comma-separated; prefixes allowed)."),
        argument("--strict", action="store_true",
                 help="Raise StrictModeError after the cell if any warning or error was found."),
        argument("--fail-fast", action="store_true",
                 help="Stop the cell at the first error-level finding seen while it runs (a NaN/Inf "
                      "loss, a step() without backward()): raise FailFastError there. Without it, "
                      "such a finding is printed at once (stderr) and the cell goes on."),
        argument("--quiet", action="store_true",
                 help="Attach the diagnostics payload (for the editor) without the visible table."),
        argument("--trace-steps", type=int, default=2, metavar="N",
                 help="How many backward() calls run with full provenance tracing (default 2)."),
    ]):
        func = deco(func)
    return func


# argparse formats usage with `%` (``%%`` is one ``%``)
_CELL_USAGE = "%%%%gradwatch [options]"
_LINE_USAGE = ("%%gradwatch on [options] | off | status\n"
               "       %%gradwatch rules\n"
               "       %%gradwatch explain CODE")
_CELL_EPILOG = """\
Rules: %gradwatch rules lists them; %gradwatch explain CODE shows one rule's page (also
offline). The line magic %gradwatch can watch every following cell: see %gradwatch?.
"""
_LINE_EPILOG = """\
Options (with "on"): as for %%gradwatch; see %%gradwatch?.
"""
_LINE_ACTIONS = ("on", "off", "status", "rules", "explain")


def _expanded(shell: Any, line: str) -> str:
    """The ``%%gradwatch`` line with ``$name`` and ``{expression}`` expanded as IPython expands
    a cell magic's line, when it holds either: IPython's expansion copies the whole namespace
    first (a notebook of 100,000 names: milliseconds), also for a line with nothing to expand."""
    if "$" not in line and "{" not in line:
        return line
    frame, depth = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_name != "run_cell_magic":
        frame, depth = frame.f_back, depth + 1
    if frame is None:  # not run as a cell magic: IPython would not have expanded it either
        return line
    # (the frame IPython's `run_cell_magic` expands from: two above it)
    return shell.var_expand(line, depth + 2)


@magics_class
class GradwatchMagics(Magics):
    shell: Any  # the InteractiveShell (Magics types it Optional: these magics always have one)

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self._auto: dict[str, Any] | None = None  # options of `%gradwatch on`
        self._auto_session: Watch | None = None
        self._auto_info: Any = None  # the ExecutionInfo of the cell `_auto_session` watches
        self._tracebacks = TracebackHandler(shell)  # a failing watched cell's exception shown plain

    @magic_arguments("gradwatch")
    @kwds(usage=_CELL_USAGE, epilog=_CELL_EPILOG, formatter_class=_Help)
    @_options
    @no_var_expand  # (see `_expanded`)
    @cell_magic("gradwatch")
    def gradwatch_cell(self, line: str, cell: str):
        """Run the cell and find out why gradients do not reach its parameters.

        The cell runs as without the magic (same output, result and exceptions; top-level
        await, AST transformers and a trailing ';' included) while gradwatch watches its
        backward() calls, the forward pass and the optimizers. Then it shows the diagnostics:
        rule code, severity, the line that caused each problem (also in an earlier cell), and
        a fix. A failing cell's exception gets one note naming the cause. An error found while
        a long cell runs (a NaN/Inf loss) is printed at once; --fail-fast stops the cell there.

        Examples:

          %%gradwatch
          for x, y in loader:
              optimizer.zero_grad()
              loss = loss_fn(model(x), y)
              loss.backward()
              optimizer.step()

          %%gradwatch --ignore GW006 --fail-fast
          train(model, loader, epochs=1)
        """
        # Inside a cell that gradwatch already watches, %%gradwatch and gradwatch.watch() add
        # nothing: the enclosing session watches that code and reports it (see `_cell`).
        __tracebackhide__ = True
        line = _expanded(self.shell, line)
        return _run_now(self._cell(self._cell_args(line), line, cell))

    @magic_arguments("gradwatch")
    @kwds(usage=_LINE_USAGE, epilog=_LINE_EPILOG, formatter_class=_Help)
    @argument("action", nargs="?", choices=_LINE_ACTIONS, help=argparse.SUPPRESS)
    @argument("code", nargs="?", help=argparse.SUPPRESS)
    @_options
    @line_magic("gradwatch")
    def gradwatch_line(self, line: str):
        """gradwatch without the cell magic, and its rule documentation.

          %gradwatch on [options]   watch every following cell, as %%gradwatch [options] would
          %gradwatch off            stop watching every cell
          %gradwatch status         say whether gradwatch watches every cell (also: %gradwatch)
          %gradwatch rules          the table of all rules
          %gradwatch explain CODE   one rule's page: what it finds, why, an example, the fix

        Rule pages ship with gradwatch, so they work offline; in a terminal:
        python -m gradwatch rule CODE and python -m gradwatch rules.
        """
        return self._line(self._parse(line, self.gradwatch_line))

    # --- arguments ----------------------------------------------------------------------------
    def _parse(self, line: str, magic: Any):
        from .rules import registry

        try:
            args = parse_argstring(magic, line)
        except UsageError as exc:
            raise UsageError(f"{exc}. Valid options: {_OPTIONS}") from None
        for option, given in (("--select", args.select), ("--ignore", args.ignore)):
            # `--select ,,,` names no code; as "no selection" it would select every rule
            if given is not None and any(not raw.replace(",", "").strip() for raw in given):
                raise UsageError(f"{option} needs at least one rule code")
        try:
            args.select_codes = registry.expand(args.select) if args.select else None
            args.ignore_codes = registry.expand(args.ignore) if args.ignore else set()
        except registry.UnknownRuleCode as exc:
            raise UsageError(str(exc)) from None
        if args.trace_steps < 0:
            raise UsageError("--trace-steps must be 0 or more")
        return args

    def _cell_args(self, line: str):
        words = line.split()
        if words and words[0] in ("on", "off", "status"):
            raise UsageError("%%gradwatch takes no on/off/status; use the line magic %gradwatch")
        if words and words[0] in ("rules", "explain"):
            raise UsageError(f"%%gradwatch takes no {words[0]}; use the line magic %gradwatch {words[0]}")
        return self._parse(line, self.gradwatch_cell)

    # --- %%gradwatch ---------------------------------------------------------------------------
    async def _cell(self, args, line: str, cell: str) -> None:
        """Runs the cell as IPython's ``run_cell`` does, inside a watch session.

        A coroutine, so that a cell with top-level ``await`` can be awaited by the kernel (see
        `_transform_gradwatch_cell`); without ``await`` it never suspends and `_run_now`
        drives it to the end at once, as IPython runs every cell that does not await.
        """
        __tracebackhide__ = True
        shell = self.shell
        number = _running_cell_number(shell)
        raw = history_cell(shell, number) if number is not None else None
        if not raw or not raw.lstrip().startswith("%%gradwatch"):
            raw = f"%%gradwatch {line}".rstrip() + "\n" + cell
        header, _, _ = raw.partition("\n")
        # The input transformer has transformed and parsed this body already (a long cell's
        # costliest part): taken from it, else done here
        prepared = _take_prepared(cell)
        transformed = prepared.transformed if prepared is not None else shell.transform_cell(cell)
        # Compile with one empty line in front, so that line numbers are the editor's (the
        # %%gradwatch line is line 1) in tracebacks, code positions and diagnostics.
        code_text = "\n" + transformed
        filename = shell.compile.cache(header + "\n" + transformed, number, raw_code=raw)
        parsed = prepared.tree if prepared is not None else None
        tree = parsed if parsed is not None else \
            shell.compile.ast_parse(code_text, filename=filename)  # SyntaxError as usual
        if shell.ast_transformers:
            parsed = None  # the source map reads the code as written, not as transformed
        tree = shell.transform_ast(tree)  # the shell's AST transformers; InputRejected as usual
        nodes = _interactive_nodes(list(tree.body), self._interactivity(transformed, tree))

        if _current_session() is not None:
            # A %%gradwatch cell run from a cell that is watched already (%rerun, run_cell):
            # the enclosing session watches this code too, and reports it.
            warnings.warn("gradwatch: this %%gradwatch cell runs inside a cell that is already "
                          "watched; the enclosing session watches and reports it, with its own "
                          "options", RuntimeWarning, stacklevel=2)
            return await self._execute(nodes, filename)
        source_map = SourceMap(shell)
        source_map.register_cell(filename, number, raw, code_text, tree=parsed)
        session = self._session(args, source_map, transformed, number)
        if session is None:  # gradwatch could not start: run the cell plainly
            return await self._execute_unwatched(nodes, filename)
        report = session.report
        try:
            session.__enter__()
        except Exception as exc:  # gradwatch's fault: run the cell unwatched
            warnings.warn(f"gradwatch could not watch this cell and ran it unwatched: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
            return await self._execute_unwatched(nodes, filename)
        try:
            await self._execute(nodes, filename)
        except BaseException as exc:
            session.__exit__(type(exc), exc, exc.__traceback__)
            # IPython shows it from the cell's frame on, as without the magic
            self._tracebacks.arm(exception=exc, runner=_EXECUTE)
            raise
        else:
            session.__exit__(None, None, None)
        finally:
            self._show(report, args.quiet)
        if args.strict and any(d.severity.value in ("error", "warning") for d in report):
            strict = StrictModeError(
                f"gradwatch --strict: {len(report)} problem(s): " + ", ".join(report.codes))
            self._tracebacks.arm(exception=strict, runner=_EXECUTE)  # its one line
            raise strict

    def _session(self, args, source_map: SourceMap, code: str, number: int | None):
        try:
            from .session import Watch

            news = NewsPrinter(select=args.select_codes, ignore=args.ignore_codes, fail_fast=args.fail_fast)
            session = Watch(select=args.select_codes, ignore=args.ignore_codes,
                            trace_steps=args.trace_steps, shell=self.shell, source_map=source_map,
                            namespace=self.shell.user_ns, code=code, execution_count=number,
                            warn=False, on_finding=news)
        except Exception as exc:  # gradwatch's fault: never the user's cell's
            warnings.warn(f"gradwatch could not start and ran the cell unwatched: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
            return None
        _cell_sessions.add(session)
        return session

    def _interactivity(self, code: str, tree: ast.Module) -> str:
        """IPython's ``ast_node_interactivity`` for this cell: "none" for a silent execution
        and, as IPython's display hook does for a cell ending in ``;``, for a body that ends
        in ``;`` (the display hook itself looks at the ``run_cell_magic(...)`` call)."""
        shell = self.shell
        info = getattr(getattr(shell.displayhook, "exec_result", None), "info", None)
        if getattr(info, "silent", False):
            return "none"
        try:
            if _ends_with_semicolon(_last_statements(code, tree)):
                return "none"
        except Exception:  # tokenize errors on code that parsed: leave it to IPython
            pass
        return shell.ast_node_interactivity

    async def _execute_unwatched(self, nodes: list[tuple[ast.stmt, str]], filename: str) -> None:
        """The body run plainly (gradwatch could not start), its traceback plain too."""
        __tracebackhide__ = True
        try:
            await self._execute(nodes, filename)
        except BaseException as exc:
            self._tracebacks.arm(exception=exc, runner=_EXECUTE)
            raise

    async def _execute(self, nodes: list[tuple[ast.stmt, str]], filename: str) -> None:
        """IPython's ``run_ast_nodes``: each statement compiled by the shell's compiler (so
        ``__future__`` imports and top-level ``await`` behave as in any cell) and run in the
        user's namespace; "single" statements go through the display hook. Exceptions
        propagate (IPython shows them once, for the whole cell)."""
        __tracebackhide__ = True
        shell = self.shell
        compiler = shell.compile
        glob, loc = shell.user_global_ns, shell.user_ns
        flags = _TOP_LEVEL_AWAIT if getattr(shell, "autoawait", False) else 0
        for node, mode in nodes:
            mod = ast.Module([node], type_ignores=[]) if mode == "exec" else ast.Interactive([node])
            with compiler.extra_flags(flags):
                code = compiler(mod, filename, mode)
            if code.co_flags & inspect.CO_COROUTINE:
                await eval(code, glob, loc)
            else:
                exec(code, glob, loc)

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
        if args.action == "explain" or args.action == "rules":
            return self._docs(args.action, args.code)
        if args.code is not None:
            raise UsageError(f"unrecognized arguments: {args.code}. Valid options: {_OPTIONS}")
        if args.action in (None, "status"):
            state = "on" if self._auto is not None else "off"
            print(f"gradwatch is {state}" + (" for every cell" if state == "on" else ""))
            return None
        if args.action == "off":
            self._auto = None
            return None
        self._auto = {"select": args.select_codes, "ignore": args.ignore_codes,
                      "trace_steps": args.trace_steps, "quiet": args.quiet, "fail_fast": args.fail_fast}
        return None

    def _docs(self, action: str, code: str | None) -> None:
        """``%gradwatch rules`` and ``%gradwatch explain CODE``: markdown for the notebook,
        the same text for terminals (``text/plain``)."""
        from . import docs
        from .rules import registry

        if action == "rules":
            if code is not None:
                raise UsageError(f"%gradwatch rules takes no rule code; for one rule: %gradwatch explain {code}")
            hint = "\nOne rule's page: `%gradwatch explain CODE`.\n"
            display({"text/markdown": docs.markdown_table() + hint,
                     "text/plain": docs.text_table() + hint.replace("`", "")}, raw=True)
            return None
        if code is None:
            raise UsageError("%gradwatch explain needs a rule code, e.g. %gradwatch explain GW001 "
                             "(%gradwatch rules lists them)")
        try:
            page = docs.page(code)
        except registry.UnknownRuleCode as exc:
            raise UsageError(str(exc)) from None
        display({"text/markdown": page, "text/plain": page}, raw=True)
        return None

    def pre_run_cell(self, info: Any) -> None:
        # One session per top-level cell: a cell that a watched cell runs (`%rerun`,
        # `get_ipython().run_cell(...)`) is watched by that cell's session.
        if self._auto is None or self._auto_session is not None or _current_session() is not None:
            return
        raw = getattr(info, "raw_cell", "") or ""
        if raw.lstrip().startswith("%%gradwatch") or raw.lstrip().startswith("%gradwatch"):
            return
        from types import SimpleNamespace

        args = SimpleNamespace(select_codes=self._auto["select"], ignore_codes=self._auto["ignore"],
                               trace_steps=self._auto["trace_steps"], fail_fast=self._auto.get("fail_fast", False))
        session = self._session(args, SourceMap(self.shell), raw, None)
        if session is None:
            return
        try:
            session.__enter__()
            self._auto_session, self._auto_info = session, info
        except Exception as exc:
            warnings.warn(f"gradwatch could not watch this cell: {exc}", RuntimeWarning, stacklevel=1)
            return
        # A failing cell is concluded before IPython shows its exception, as %%gradwatch does:
        # the report first, then the traceback with the "gradwatch GWxxx" note.
        self._tracebacks.arm(before_show=self._end_auto_session)

    def post_run_cell(self, result: Any) -> None:
        global _prepared
        _prepared = None  # a body the magic did not take (IPython's completeness checks transform too)
        if self._auto_session is not None and result is not None \
                and getattr(result, "info", None) is not self._auto_info:
            return  # the end of a cell that the watched cell ran: not the watched cell's end
        self._tracebacks.disarm()
        self._end_auto_session(getattr(result, "error_in_exec", None), result)

    def _end_auto_session(self, error: BaseException | None, result: Any = None) -> None:
        """Concludes the session of ``%gradwatch on``: at the cell's end, or when IPython is
        about to show the cell's exception (``result`` None: the running cell's)."""
        session = self._auto_session
        if session is None:
            return
        self._auto_session = self._auto_info = None
        if result is None:
            result = getattr(self.shell.displayhook, "exec_result", None)
        session.__exit__(type(error) if error else None, error, error.__traceback__ if error else None)
        report = session.report
        report.execution_count = getattr(result, "execution_count", None)
        if report.diagnostics or session.events.n_backward:
            self._show(report, bool(self._auto and self._auto["quiet"]))


# The function whose frame runs a %%gradwatch cell's body: a traceback shows the body from there on.
_EXECUTE = GradwatchMagics._execute.__code__


def _run_now(coro: Any) -> Any:
    """Runs a coroutine that does not suspend to its end (IPython's pseudo-synchronous runner
    for cells without ``await``); one that would suspend is closed, and that is an error."""
    __tracebackhide__ = True
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("this %%gradwatch cell awaits something that needs an event loop, but "
                       "it was not run as an async cell (run it as a cell of its own)")


def _interactive_nodes(nodes: list[ast.stmt], interactivity: str) -> list[tuple[ast.stmt, str]]:
    """Which statements run as "exec" and which as "single" (displayed), as IPython's
    ``run_ast_nodes`` decides for ``ast_node_interactivity``."""
    if not nodes:
        return []
    if interactivity == "last_expr_or_assign":
        last = nodes[-1]
        target = None
        if isinstance(last, ast.Assign) and len(last.targets) == 1:
            target = last.targets[0]
        elif isinstance(last, _SINGLE_TARGET_NODES):
            target = last.target
        if isinstance(last, _ASSIGN_NODES) and isinstance(target, ast.Name):
            shown = ast.Expr(ast.Name(target.id, ast.Load()))
            ast.fix_missing_locations(shown)
            nodes.append(shown)
        interactivity = "last_expr"
    if interactivity == "last_expr":
        interactivity = "last" if isinstance(nodes[-1], ast.Expr) else "none"
    if interactivity == "none":
        return [(n, "exec") for n in nodes]
    if interactivity == "last":
        return [(n, "exec") for n in nodes[:-1]] + [(nodes[-1], "single")]
    if interactivity == "all":
        return [(n, "single") for n in nodes]
    raise ValueError(f"Interactivity was {interactivity!r}")


def _last_statements(code: str, tree: ast.Module) -> str:
    """The end of ``code`` from the first line of its last statements (those that share lines
    with the last one): where a trailing ``;`` is, without tokenizing a long cell. ``tree`` is
    ``code`` parsed with one line in front."""
    body = tree.body
    i = len(body) - 1
    while i > 0 and (body[i - 1].end_lineno or body[i - 1].lineno) >= body[i].lineno:
        i -= 1  # `a = 1; b` : from `a` on
    if i <= 0:
        return code
    return "".join(code.splitlines(keepends=True)[body[i].lineno - 2:])


def _ends_with_semicolon(code: str) -> bool:
    check = getattr(DisplayHook, "semicolon_at_end_of_expression", None)
    if check is not None:
        return bool(check(code))
    import io
    import tokenize

    skip = (tokenize.ENDMARKER, tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT)
    for token in reversed(list(tokenize.generate_tokens(io.StringIO(code).readline))):
        if token.type not in skip:
            return token.type == tokenize.OP and token.string == ";"
    return False


def _current_session() -> Any:
    """The watch session active on this thread, if any (never imports torch)."""
    session = sys.modules.get(f"{__package__}.session")
    return session.current() if session is not None else None


def watches_cell(session: Watch) -> bool:
    """Whether ``session`` is one that ``%%gradwatch`` or ``%gradwatch on`` runs."""
    return session in _cell_sessions


async def _await_cell(line: str, cell: str) -> None:
    """A ``%%gradwatch`` cell whose body awaits at top level: the kernel awaits this (see
    `_transform_gradwatch_cell`), as it awaits any cell with top-level ``await``. Does what
    ``run_cell_magic`` does before it calls the magic."""
    __tracebackhide__ = True
    magics = _magics
    if magics is None:
        raise UsageError("Cell magic `%%gradwatch` not found.")
    shell = magics.shell
    line = shell.var_expand(line, 1)  # 1: the frame of the cell that awaits this
    with shell.builtin_trap:
        await magics._cell(magics._cell_args(line), line, cell)


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


class _Prepared(NamedTuple):
    """A %%gradwatch body as the input transformer saw it: transformed, and parsed with one
    line in front (as the magic compiles it), for the magic to take instead of doing it again."""

    body: str
    transformed: str
    tree: ast.Module


_prepared: _Prepared | None = None


def _take_prepared(body: str) -> _Prepared | None:
    global _prepared
    prepared, _prepared = _prepared, None
    return prepared if prepared is not None and prepared.body == body else None


def _transform_gradwatch_cell(lines: list[str]) -> list[str]:
    """An input transformer for ``%%gradwatch`` cells.

    * A body that does not parse: the cell becomes a plain cell (the magic line blanked), so
      IPython reports the SyntaxError exactly as it would without the magic — same line, same
      traceback — and nothing runs.
    * A body with top-level ``await``: the cell becomes ``await <gradwatch runs the body>``,
      so that IPython (and the kernel) run it as they run any cell that awaits. Magics only
      return values; a coroutine must be awaited by the cell itself.
    """
    if not lines or not lines[0].startswith("%%gradwatch"):
        return lines
    name, _, first_line = lines[0][2:].rstrip().partition(" ")
    if name != "gradwatch":
        return lines
    global _prepared
    shell = _magics.shell if _magics is not None else None
    body = "".join(lines[1:])
    _prepared = None
    try:
        transformed = shell.transform_cell(body) if shell is not None else body
        tree = shell.compile.ast_parse("\n" + transformed) if shell is not None else ast.parse(transformed)
    except SyntaxError:
        return ["\n"] + lines[1:]
    except Exception:
        return lines
    if shell is not None:
        _prepared = _Prepared(body, transformed, tree)
    try:
        awaits = shell is not None and shell.should_run_async(
            body, transformed_cell=transformed, preprocessing_exc_tuple=None)
    except Exception:
        awaits = False
    if not awaits:
        return lines
    return [f"await __import__({__name__!r}, fromlist=['_await_cell'])._await_cell("
            f"{first_line!r}, {body!r})\n"]


_magics: GradwatchMagics | None = None
# `%reload_ext gradwatch` unloads and loads again within one cell: `%gradwatch on` and its
# options are carried over that (shell id, execution count, options); a later load starts off.
_carried: tuple[int, Any, dict[str, Any]] | None = None


def load(shell: Any) -> None:
    global _magics, _carried
    if _magics is not None and _magics.shell is shell:
        return
    carried, _carried = _carried, None
    _magics = GradwatchMagics(shell)
    if carried is not None and carried[:2] == (id(shell), getattr(shell, "execution_count", None)):
        _magics._auto = carried[2]
    shell.register_magics(_magics)
    shell.input_transformers_cleanup.append(_transform_gradwatch_cell)
    shell.events.register("pre_run_cell", _magics.pre_run_cell)
    shell.events.register("post_run_cell", _magics.post_run_cell)


def unload(shell: Any) -> None:
    global _magics, _carried
    magics, _magics = _magics, None
    if magics is None:
        return
    magics.post_run_cell(None)  # ends a session of `%gradwatch on` and the traceback handler
    if magics._auto is not None:
        _carried = (id(shell), getattr(shell, "execution_count", None), magics._auto)
    magics._auto = None
    for event, fn in (("pre_run_cell", magics.pre_run_cell), ("post_run_cell", magics.post_run_cell)):
        try:
            shell.events.unregister(event, fn)
        except ValueError:
            pass
    if _transform_gradwatch_cell in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.remove(_transform_gradwatch_cell)
    for kind in ("line", "cell"):
        shell.magics_manager.magics[kind].pop("gradwatch", None)
    shell.magics_manager.registry.pop(type(magics).__name__, None)
