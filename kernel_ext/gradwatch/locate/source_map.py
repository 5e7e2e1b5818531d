"""From frames, code positions and cell history to `Location`s.

Python 3.11 records, for every bytecode instruction, the exact source range of the expression
it belongs to (``code.co_positions()``), in UTF-8 byte columns. This module turns those into
what the payload promises: the execution count of the cell, 1-based lines as the editor shows
the cell, and columns counted in characters. For values made before gradwatch was watching, it
finds the assignment in the cell history that created them.
"""

from __future__ import annotations

import ast
import functools
import linecache
import os
import re
import sysconfig
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any, Iterable

from ..diagnostics import Location

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIBRARY_DIRS = tuple(
    os.path.normcase(os.path.abspath(p)) + os.sep
    for p in {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    if p
) + (_PKG_DIR + os.sep,)


@functools.lru_cache(maxsize=4096)
def _outside_libraries_at(path: str) -> bool:
    return not os.path.normcase(os.path.abspath(path)).startswith(_LIBRARY_DIRS)


def _outside_libraries(filename: str) -> bool:
    """Whether a file (not a cell) is the user's: not under the standard library, the installed
    packages or gradwatch. Absolute paths are classified once per process (each session's own
    cache starts empty; a relative one depends on the working directory)."""
    if os.path.isabs(filename):
        return _outside_libraries_at(filename)
    return _outside_libraries_at.__wrapped__(filename)


# A code position: the code object and the instruction offset. Kept instead of frames, which
# would keep the user's locals (and tensors) alive.
Position = tuple[CodeType, int]


_MISSING: Any = object()


@dataclass
class _Cell:
    execution_count: int | None
    editor_lines: list[str]  # the cell as the editor shows it
    code_lines: list[str]  # what was compiled; same line numbers, maybe transformed text
    tree: ast.Module | None = None  # ``code_lines`` parsed, when the magic parsed it already
    offset: int = 0  # editor line = compiled line + offset (IPython drops a cell's leading blank lines)


class SourceMap:
    """Knows which file names are notebook cells, and what the editor shows for them."""

    def __init__(self, shell: Any = None) -> None:
        self.shell = shell
        self._cells: dict[str, _Cell] = {}
        self._user_file: dict[str, bool] = {}
        self._file_lines: dict[str, list[str]] = {}
        # Cell-history searches run once per cell, not once per tensor: the sorted cells, their
        # parsed trees and per-tree indexes live as long as this map (one watched cell), and are
        # dropped when a cell is added (`_history_key`).
        self._history_key: tuple[int, int] | None = None
        self._sources: list[tuple[str, str]] = []
        self._trees: dict[str, ast.Module | None] = {}
        self._indexes: dict[tuple[str, str], Any] = {}
        self._found: dict[tuple[str, bool, tuple[str, ...]], Location | None] = {}
        self._positions: dict[CodeType, list] = {}
        # position -> its Location: 1,000 optimizers built on one line are one Location (dropped
        # when a cell is registered: a file's cell may change)
        self._locations: dict[tuple[CodeType, int], Location | None] = {}

    # --- registration --------------------------------------------------------------------
    def register_cell(self, filename: str, execution_count: int | None,
                      editor_text: str, code_text: str, tree: ast.Module | None = None) -> None:
        """``tree``: ``code_text`` parsed already (the magic parses a cell once; a 5,000-line
        cell takes a quarter of a second to parse)."""
        self._cells[filename] = _Cell(execution_count, editor_text.splitlines(),
                                      code_text.splitlines(), tree)
        self._user_file[filename] = True
        self._history_key = None
        self._locations.clear()

    def _cell_for(self, filename: str) -> _Cell | None:
        cell = self._cells.get(filename)
        if cell is not None or self.shell is None:
            return cell
        number = getattr(getattr(self.shell, "compile", None), "_filename_map", {}).get(filename)
        if number is None:
            return None
        code = linecache.getlines(filename)
        raw = history_cell(self.shell, number)
        compiled = [line.rstrip("\n") for line in code]
        editor = raw.splitlines() if raw is not None else compiled
        offset = _leading_blank(editor) - _leading_blank(compiled)
        cell = _Cell(number, editor, compiled, offset=max(offset, 0))
        self._cells[filename] = cell
        return cell

    # --- frames ----------------------------------------------------------------------------
    def is_user_file(self, filename: str) -> bool:
        known = self._user_file.get(filename)
        if known is None:
            if self._cell_for(filename) is not None:
                known = True
            elif filename.startswith("<") and not filename.startswith("<ipython-input"):
                known = False  # <frozen ...>, <string>, <timed exec> ...
            else:
                known = _outside_libraries(filename)
            self._user_file[filename] = known
        return known

    def user_frame(self, frame: FrameType | None) -> FrameType | None:
        """The innermost frame at or above ``frame`` that runs the user's own code."""
        known, is_user = self._user_file.get, self.is_user_file  # (the cache read inline: per frame)
        while frame is not None:
            filename = frame.f_code.co_filename
            user = known(filename)
            if user or (user is None and is_user(filename)):
                return frame
            frame = frame.f_back
        return frame

    # --- positions -> locations --------------------------------------------------------------
    def location(self, position: Position | None) -> Location | None:
        if position is None:
            return None
        found = self._locations.get(position, _MISSING)
        if found is not _MISSING:
            return found
        code, lasti = position
        positions = self._positions.get(code)
        if positions is None:  # once per code object: a 5,000-line cell has 30,000 instructions
            positions = self._positions[code] = list(code.co_positions())
        span = _span(positions, lasti)
        found = self.location_of_span(code.co_filename, *span) if span is not None else None
        self._locations[position] = found
        return found

    def location_of_span(self, filename: str, line: int, end_line: int,
                         col: int, end_col: int) -> Location | None:
        """Byte-column span in a compiled file -> editor Location."""
        cell = self._cell_for(filename)
        offset = 0
        if cell is not None:
            code_lines, editor_lines, offset = cell.code_lines, cell.editor_lines, cell.offset
            where: dict[str, Any] = {"cell": cell.execution_count}
        else:
            code_lines = self._file_lines.get(filename)
            if code_lines is None:  # (as linecache has them, ending in "\n": stripped where read)
                code_lines = self._file_lines[filename] = linecache.getlines(filename)
            editor_lines = code_lines
            where = {"path": filename}
        if not 1 <= line <= len(code_lines):
            return None
        end_line = max(end_line, line)
        first = code_lines[line - 1].rstrip("\n")
        last = code_lines[end_line - 1].rstrip("\n") if end_line <= len(code_lines) else first
        column = char_column(first, col)
        end_column = char_column(last, end_col)
        source = editor_lines[line - 1 + offset].rstrip("\n") if line + offset <= len(editor_lines) else first
        if source != first:  # a transformed line (a %magic): flag the whole editor line
            column, end_column, end_line = 0, len(source), line
        return Location(line=line + offset, column=column + 1, end_line=end_line + offset,
                        end_column=end_column + 1, source=source, **where)

    def node_location(self, filename: str, node: ast.expr | ast.stmt) -> Location | None:
        return self.location_of_span(filename, node.lineno, node.end_lineno or node.lineno,
                                     node.col_offset, node.end_col_offset or node.col_offset)

    # --- the cell history --------------------------------------------------------------------
    def cell_sources(self) -> list[tuple[str, str]]:
        """(file name, code) of the known cells, newest first."""
        fmap = getattr(getattr(self.shell, "compile", None), "_filename_map", {}) or {}
        key = (len(self._cells), len(fmap))
        if key == self._history_key:
            return self._sources
        cells = []
        for filename in dict.fromkeys([*self._cells, *fmap]):
            cell = self._cell_for(filename)
            if cell is not None:
                number = cell.execution_count
                cells.append((float("inf") if number is None else number, filename, cell))
        self._sources = [(filename, "\n".join(cell.code_lines))
                         for _, filename, cell in sorted(cells, key=lambda c: c[0], reverse=True)]
        self._history_key = (len(self._cells), len(fmap))
        self._trees = {filename: cell.tree for filename, cell in self._cells.items() if cell.tree is not None}
        self._indexes.clear()
        self._found.clear()
        return self._sources

    def _tree(self, filename: str, code: str) -> ast.Module | None:
        """A cell's parsed code, parsed once."""
        if filename not in self._trees:
            self._trees[filename] = _parse(code)
        return self._trees[filename]

    def _nodes(self, filename: str, code: str, kind: str) -> Any:
        """A cell's nodes of one kind, in ``ast.walk`` order: the statement kinds ("loops",
        "withs", "functions", and "assign" / "assign-attr", a dict: assigned name -> nodes) in
        one walk of the statements, "calls" in a walk of the whole tree, each only when asked."""
        found = self._indexes.get((filename, kind))
        if found is None:
            tree = self._tree(filename, code)
            index = {"calls": _calls(tree)} if kind == "calls" else _index(tree)
            for each, nodes in index.items():
                self._indexes[(filename, each)] = nodes
            found = self._indexes[(filename, kind)]
        return found

    def find_assignment(self, name: str, attribute: bool = False, owners: tuple[str, ...] = ()) -> Location | None:
        """The value expression of the newest assignment ``name = <expr>`` in the cells
        (with ``attribute``: ``<anything>.name = <expr>``, e.g. ``self.fc2 = nn.Linear(...)``;
        ``owners`` (``("model",)``) prefers ``<x>.model.name = ...`` over ``self.name = ...``)."""
        sources = self.cell_sources()
        key = (name, attribute, owners)
        if key in self._found:
            return self._found[key]
        result = None
        for filename, code in sources:
            if code.isascii() and name not in code:
                continue  # not in this cell's text: no need to parse it
            if len(code) > _LONG_CELL and code.isascii() and not _may_assign(name).search(code):
                continue  # a long cell (a 5,000-line one takes ~0.2 s to parse) with no line that can assign it
            best, best_key = None, None
            for node in self._nodes(filename, code, "assign-attr" if attribute else "assign").get(name, ()):
                value = _assigned_value(node, name, attribute)
                if value is None:
                    continue
                rank = (_owner_match(node, owners) if attribute else 0, value.lineno)
                if best_key is None or rank >= best_key:
                    best, best_key = value, rank
            if best is not None:
                result = self.node_location(filename, best)
                break
        self._found[key] = result
        return result

    # --- searches in the cells' syntax trees ------------------------------------------------------
    def _cell_tree(self, location: Location) -> tuple[str, ast.Module] | None:
        """(file name, parsed code) of the cell that holds ``location``."""
        for filename, code in self.cell_sources():
            cell = self._cells.get(filename) or self._cell_for(filename)
            if cell is not None and cell.execution_count == location.cell:
                tree = self._tree(filename, code)
                return (filename, tree) if tree is not None else None
        return None

    def _cell_nodes(self, location: Location, kind: str) -> tuple[str, list] | None:
        """(file name, nodes of ``kind``) of the cell that holds ``location``."""
        for filename, code in self.cell_sources():
            cell = self._cells.get(filename) or self._cell_for(filename)
            if cell is not None and cell.execution_count == location.cell:
                return filename, self._nodes(filename, code, kind)
        return None

    def _newest_call(self, wanted, words: Iterable[str]) -> Location | None:
        """The newest call for which ``wanted(call)`` holds, in the newest cell that has one;
        a cell whose text has none of ``words`` (in every such call) is not walked."""
        words = tuple(words)
        for filename, code in self.cell_sources():
            if code.isascii() and not any(word in code for word in words):
                continue
            best = None
            for node in self._nodes(filename, code, "calls"):
                if wanted(node) and (best is None or node.lineno >= best.lineno):
                    best = node
            if best is not None:
                return self.node_location(filename, best)
        return None

    def in_same_loop(self, a: Location, b: Location) -> bool:
        """Whether ``a`` and ``b`` are inside one ``for``/``while`` loop of the same cell (so
        what ``a`` creates is made anew in every iteration of ``b``'s loop)."""
        if a.cell is None or a.cell != b.cell or a.path != b.path:
            return False
        found = self._cell_nodes(a, "loops")
        for node in found[1] if found is not None else ():
            first, last = node.body[0].lineno, node.end_lineno or node.lineno
            if first <= a.line <= last and first <= b.line <= last:
                return True
        return False

    def enclosing_with(self, location: Location, names: Iterable[str]) -> Location | None:
        """The ``with torch.no_grad():`` (or similar) header around ``location``, if any."""
        names = tuple(names)
        found = self._cell_nodes(location, "withs")
        if found is None:
            return None
        filename, withs = found
        best = None
        for node in withs:
            if node.lineno <= location.line <= (node.end_lineno or node.lineno):
                for item in node.items:
                    if any(n in ast.unparse(item.context_expr) for n in names):
                        if best is None or node.lineno > best[0].lineno:
                            best = (node, item.context_expr)
        return self.node_location(filename, best[1]) if best is not None else None

    def find_call(self, names: Iterable[str]) -> Location | None:
        """The newest call of a function or class named one of ``names`` (``nn.Sigmoid()``)."""
        wanted = set(names)
        return self._newest_call(lambda call: _call_name(call) in wanted, wanted)

    def find_summed_loss(self) -> Location | None:
        """The newest loss constructed with ``reduction='sum'``: its scale grows with the batch."""
        return self._newest_call(lambda call: any(
            kw.arg == "reduction" and isinstance(kw.value, ast.Constant) and kw.value.value == "sum"
            for kw in call.keywords), ("reduction",))

    def find_unreduced_loss(self) -> Location | None:
        """The newest loss constructed to return per-element values: ``nn.CrossEntropyLoss(
        reduction='none')``, ``reduction=<a variable>``, ``reduce=False``; also the functional
        form (``F.mse_loss(a, b, reduction='none')``) and a config's ``reduction="none"``."""
        return self._newest_call(_unreduced, ("reduction", "reduce"))

    def _function_around(self, location: Location) -> tuple[str, ast.FunctionDef | ast.AsyncFunctionDef] | None:
        found = self._cell_nodes(location, "functions")
        if found is None:
            return None
        filename, functions = found
        best = None
        for node in functions:
            if node.body[0].lineno <= location.line <= (node.end_lineno or node.lineno) and \
                    (best is None or node.lineno > best.lineno):
                best = node
        return (filename, best) if best is not None else None

    def function_start(self, location: Location) -> Location | None:
        """The first statement of the innermost function around ``location``."""
        found = self._function_around(location)
        if found is None:
            return None
        filename, function = found
        first = function.body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and len(function.body) > 1:
            first = function.body[1]  # after the docstring
        return self.node_location(filename, first)

    def function_parameters(self, location: Location) -> list[str]:
        """The parameter names of the innermost function around ``location`` ([] outside one)."""
        found = self._function_around(location)
        if found is None:
            return []
        args = found[1].args
        return [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]

    def enclosing_decorator(self, location: Location, names: Iterable[str]) -> Location | None:
        """The ``@torch.no_grad()`` (or similar) decorator of the function around ``location``."""
        names = tuple(names)
        found = self._function_around(location)
        if found is None:
            return None
        filename, function = found
        hits = [d for d in function.decorator_list if any(n in ast.unparse(d) for n in names)]
        return self.node_location(filename, hits[0]) if hits else None


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _unreduced(call: ast.Call) -> bool:
    name = _call_name(call)
    loss = name.endswith("Loss") or name.endswith("_loss") or name in ("cross_entropy", "nll_loss")
    for kw in call.keywords:
        value = kw.value
        if kw.arg == "reduction" and isinstance(value, ast.Constant) and value.value == "none":
            return True  # also a config object's field (`LossConfig(..., reduction="none")`)
        if kw.arg == "reduction" and loss and not (isinstance(value, ast.Constant) and value.value in ("mean", "sum")):
            return True
        if kw.arg == "reduce" and isinstance(value, ast.Constant) and value.value is False:
            return True
    return False


def _leading_blank(lines: list[str]) -> int:
    """How many blank lines a cell starts with (IPython compiles it without them)."""
    count = 0
    for line in lines:
        if line.strip():
            break
        count += 1
    return count if count < len(lines) else 0


def history_cell(shell: Any, number: int) -> str | None:
    try:
        raw = shell.history_manager.input_hist_raw
        return raw[number] if 0 <= number < len(raw) else None
    except Exception:
        return None


def char_column(line: str, byte_col: int) -> int:
    """UTF-8 byte offset in ``line`` -> character offset (both 0-based)."""
    if byte_col <= 0:
        return 0
    if line.isascii():
        return min(byte_col, len(line))
    return len(line.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))


def _span(positions: list, lasti: int) -> tuple[int, int, int, int] | None:
    """The source span of the instruction at byte offset ``lasti`` (``code.co_positions()``)."""
    i = lasti // 2
    if not 0 <= i < len(positions):
        return None
    line, end_line, col, end_col = positions[i]
    if line is None or end_line is None or col is None or end_col is None:
        return None
    return line, end_line, col, end_col


_NODE_KINDS: dict[str, tuple[type, ...]] = {
    "loops": (ast.For, ast.While, ast.AsyncFor), "withs": (ast.With, ast.AsyncWith),
    "functions": (ast.FunctionDef, ast.AsyncFunctionDef),
}
# Nodes that hold statements (statements never sit inside expressions).
_BLOCKS = (ast.stmt, ast.excepthandler, ast.match_case)
_LONG_CELL = 10_000  # characters


@functools.lru_cache(maxsize=256)
def _may_assign(name: str) -> re.Pattern[str]:
    """A line that may bind ``name`` (or ``.name``): the word, then on its line an ``=`` that
    is no comparison (``opt = ...``, ``a, opt = ...``, ``opt += ...``, also a keyword argument:
    erring towards a parse), or a line the statement goes on from or that ends with the word (a
    bracketed target over several lines), or ``as``/``for``/``import``/``def``/``class``/``:=``."""
    word = re.escape(name)
    return re.compile(
        rf"\b{word}\b[^\n=]*(?<![!<>])=(?!=)|\b{word}\b[^\n]*[,(\[\\]\s*$|\b{word}\s*$|\bas\s+{word}\b"
        rf"|\bfor\b[^\n]*\b{word}\b|\bimport\b[^\n]*\b{word}\b|\b(?:def|class)\s+{word}\b|\b{word}\s*:=",
        re.MULTILINE)


def _statements(tree: ast.Module | None) -> Iterable[ast.AST]:
    """``ast.walk(tree)`` restricted to statements (and the except/case clauses that hold
    some), in the same order: a breadth-first walk whose every level keeps ``ast.walk``'s
    order, at a fraction of its cost (a long cell has ten expression nodes per statement)."""
    if tree is None:
        return
    from collections import deque

    todo = deque([tree])
    while todo:
        node = todo.popleft()
        yield node
        for field in node._fields:
            value = getattr(node, field, None)
            if type(value) is list and value and isinstance(value[0], _BLOCKS):
                todo.extend(value)


def _calls(tree: ast.Module | None) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)] if tree is not None else []


def _index(tree: ast.Module | None) -> dict[str, Any]:
    """One walk of ``tree``'s statements: those of each kind in walk order, and for "assign"
    and "assign-attr" a dict from each name an assignment may bind (``_assigned_value``
    decides) to those assignments."""
    index: dict[str, Any] = {kind: [] for kind in _NODE_KINDS}
    names: dict[str, list[ast.stmt]] = {}
    attributes: dict[str, list[ast.stmt]] = {}
    index["assign"], index["assign-attr"] = names, attributes
    kinds = list(_NODE_KINDS.items())
    for node in _statements(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            bound: set[str] = set()
            attrs: set[str] = set()
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name):
                    bound.add(target.id)
                elif isinstance(target, ast.Tuple):
                    bound.update(t.id for t in target.elts if isinstance(t, ast.Name))
                elif isinstance(target, ast.Attribute) and isinstance(node, ast.Assign):
                    attrs.add(target.attr)
            for name in bound:
                names.setdefault(name, []).append(node)
            for name in attrs:
                attributes.setdefault(name, []).append(node)
            continue
        for kind, node_types in kinds:
            if isinstance(node, node_types):
                index[kind].append(node)
                break
    return index


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except SyntaxError:
        return None


def _owner_match(node: ast.AST, owners: tuple[str, ...]) -> int:
    """How many of ``owners`` (innermost last) the assignment's target spells before its attribute."""
    target = node.targets[0] if isinstance(node, ast.Assign) and node.targets else None
    value = target.value if isinstance(target, ast.Attribute) else None
    n = 0
    for owner in reversed(owners):
        if isinstance(value, ast.Attribute) and value.attr == owner:
            n += 1
            value = value.value
        else:
            break
    return n


def _assigned_value(node: ast.AST, name: str, attribute: bool = False) -> ast.expr | None:
    if isinstance(node, ast.Assign):
        for target in node.targets:
            if attribute:
                if isinstance(target, ast.Attribute) and target.attr == name:
                    return node.value
                continue
            if isinstance(target, ast.Name) and target.id == name:
                return node.value
            if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                for t, v in zip(target.elts, node.value.elts, strict=False):
                    if isinstance(t, ast.Name) and t.id == name:
                        return v
            elif isinstance(target, ast.Tuple) and any(isinstance(t, ast.Name) and t.id == name
                                                       for t in target.elts):
                return node.value  # `out, hidden = rnn(x, hidden)`
    if attribute:
        return None
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
            and node.target.id == name and node.value is not None:
        return node.value
    return None
