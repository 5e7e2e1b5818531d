"""Run code through a real Jupyter kernel (nbclient + ipykernel) and collect gradwatch payloads.

Used by the kernel tests (``tests/kernel``) and by ``scripts/evaluate.py``.

Kernel
    Every notebook runs in a fresh ipykernel of *this* interpreter: a private kernelspec
    (``argv[0] == sys.executable``) is written to a temporary directory, so a user-level
    ``python3`` kernelspec pointing at another Python can never be picked up. By default the
    kernel process is forked from ``forkserver.py``, which has torch and ipykernel imported
    already (a fresh process, shell, history and namespace each time; ~2 s of imports less
    per notebook); ``GRADWATCH_TEST_FORKSERVER=0`` or ``plain=True`` starts it with
    ``python -m ipykernel_launcher`` instead. ``GRADWATCH_TEST_WORKERS`` kernels run at a time.

Fixture programs (``tests/fixtures/programs/<group>/<name>.py``)
    * Cells are separated by lines starting with ``# %%``. A cell whose separator line is
      ``# %% gradwatch [options]`` runs as a ``%%gradwatch [options]`` cell: the separator line
      is replaced by ``%%gradwatch [options]``, so it is line 1 of the cell. Other cells run
      plainly and keep their separator line (a comment) as line 1, so in every cell
      ``cell line = file line - separator line + 1``.
    * A file without separators is one ``%%gradwatch`` cell: ``%%gradwatch`` is prepended, so
      file line N is cell line N + 1.
    * ``# expect: GW001 [GW002 ...]`` at the end of a line: a diagnostic with that code must
      start on that line (``location.line``) of that cell (``location.cell`` = the cell's
      execution count). Repeat a code for two diagnostics on one line.
    * ``# expect-error: RuntimeError`` on the first line: the fixture's last ``%%gradwatch``
      cell must fail with that exception type; without it no cell may fail.
    * ``# known-issue: <text>`` anywhere: a known engine bug (see tests/KNOWN_ISSUES.md); the
      corpus test for this fixture is ``xfail(strict=True)``; scripts/evaluate.py still counts
      it as it is.
    * Text before the first separator that is only comments and blank lines is not a cell.
    The notebook built from a fixture starts with a ``%load_ext gradwatch`` cell.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager, KernelManager
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = REPO / "tests" / "fixtures" / "programs"
REAL_PROGRAMS = REPO / "tests" / "real"  # the real-bug corpus (format: tests/real/README.md)
SCHEMA_PATH = REPO / "kernel_ext" / "gradwatch" / "schema" / "diagnostics.schema.json"
MIME = "application/vnd.gradwatch.diagnostics+json"
KERNEL_NAME = "gradwatch-test-python"  # forked from the fork server (see forkserver.py)
PLAIN_KERNEL_NAME = "gradwatch-test-python-plain"  # always `python -m ipykernel_launcher`
CELL_TIMEOUT = int(os.environ.get("GRADWATCH_TEST_CELL_TIMEOUT", "120"))

_SEPARATOR = re.compile(r"^# %%(?P<rest>.*)$")
_EXPECT = re.compile(r"#\s*expect:\s*(?P<codes>(?:GW\d{3}\b\s*)+)$")
_EXPECT_ERROR = re.compile(r"^#\s*expect-error:\s*(?P<name>[\w.]+)\s*$")
_KNOWN_ISSUE = re.compile(r"#\s*known-issue:\s*(?P<text>.+)$")
_HEADER = re.compile(r"^#\s*(?P<key>source|bug-class|symptom|diagnosis|expect-error):\s*(?P<value>.*?)\s*$")
_ROOT_CAUSE = re.compile(r"#\s*root-cause\s*$")
_RELATED = re.compile(r"#\s*related\s*$")


# --- kernelspec ---------------------------------------------------------------------------------
def use_forkserver() -> bool:
    return os.environ.get("GRADWATCH_TEST_FORKSERVER", "1") != "0" and hasattr(os, "fork")


_SERVER: subprocess.Popen | None = None


def _start_forkserver(root: str) -> str:
    """Start forkserver.py (see there); return its socket path."""
    global _SERVER
    path = os.path.join(root, "forkserver.sock")
    env = dict(os.environ, **_KERNEL_ENV)
    _SERVER = subprocess.Popen([sys.executable, str(Path(__file__).with_name("forkserver.py")), "serve", path],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=str(REPO))
    line = _SERVER.stdout.readline()
    if line.strip() != b"ready":
        raise RuntimeError(f"the kernel fork server did not start: {line!r}")
    atexit.register(_stop_forkserver)
    return path


def _stop_forkserver() -> None:
    server = _SERVER
    if server is not None and server.poll() is None:
        server.stdin.close()  # the server kills its kernels and exits
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


# One torch thread per kernel: several kernels share few cores in the test run.
_KERNEL_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


@lru_cache(maxsize=1)
def kernel_dir() -> str:
    """A temporary kernelspec directory holding one kernel: this interpreter's ipykernel."""
    root = tempfile.mkdtemp(prefix="gradwatch-kernels-")
    atexit.register(shutil.rmtree, root, True)
    plain = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    if use_forkserver():
        forked = [sys.executable, str(Path(__file__).with_name("forkserver.py")), "connect",
                  _start_forkserver(root), "-f", "{connection_file}"]
    else:
        forked = plain
    for name, argv in ((KERNEL_NAME, forked), (PLAIN_KERNEL_NAME, plain)):
        spec_dir = Path(root) / name
        spec_dir.mkdir()
        spec = {"argv": argv, "display_name": "gradwatch tests", "language": "python", "env": _KERNEL_ENV}
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return root


def _spec_manager() -> KernelSpecManager:
    return KernelSpecManager(kernel_dirs=[kernel_dir()], ensure_native_kernel=False)


def _client(nb: nbformat.NotebookNode, *, async_km: bool, plain: bool = False) -> NotebookClient:
    km_class = AsyncKernelManager if async_km else KernelManager
    name = PLAIN_KERNEL_NAME if plain else KERNEL_NAME
    # Unix sockets, each kernel's under a path of its own: with TCP, jupyter_client picks free
    # ports by binding and closing them, and a kernel started at the same moment could take one
    # before this kernel binds it ("Address already in use": the kernel dies before its first reply)
    ipc = Path(kernel_dir()) / "ipc"
    ipc.mkdir(exist_ok=True)
    km = km_class(kernel_name=name, kernel_spec_manager=_spec_manager(), transport="ipc",
                  ip=str(ipc / uuid.uuid4().hex[:12]))
    client = NotebookClient(nb, km=km, kernel_name=name, allow_errors=True,
                            timeout=CELL_TIMEOUT, startup_timeout=60,
                            shutdown_kernel="immediate", resources={"metadata": {"path": str(REPO)}})
    client.owns_km = True  # shut the kernel down when the notebook is done
    return client


# --- payloads -----------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def validate_payload(payload: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``payload`` fits the shipped schema."""
    _validator().validate(payload)


# --- executed cells -------------------------------------------------------------------------------
@dataclass
class CellResult:
    index: int
    source: str
    execution_count: int | None  # what the notebook shows (nbclient's cell execution_count)
    reply_count: int | None  # execution_count in the kernel's execute_reply
    outputs: list[dict[str, Any]]

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return [o["data"][MIME] for o in self.outputs
                if o.get("output_type") in ("display_data", "execute_result") and MIME in o.get("data", {})]

    @property
    def gradwatch_outputs(self) -> list[dict[str, Any]]:
        return [o for o in self.outputs if MIME in o.get("data", {})]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [o for o in self.outputs if o.get("output_type") == "error"]

    @property
    def error(self) -> dict[str, Any] | None:
        errors = self.errors
        return errors[0] if errors else None

    def stream(self, name: str = "stdout") -> str:
        return "".join(o["text"] for o in self.outputs
                       if o.get("output_type") == "stream" and o.get("name") == name)

    @property
    def results(self) -> list[dict[str, Any]]:
        return [o for o in self.outputs if o.get("output_type") == "execute_result"]

    @property
    def diagnostics(self) -> list[dict[str, Any]]:
        return [d for p in self.payloads for d in p["diagnostics"]]

    def traceback_text(self) -> str:
        err = self.error
        return _strip_ansi("\n".join(err["traceback"])) if err else ""


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@dataclass
class NotebookResult:
    cells: list[CellResult]

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return [p for c in self.cells for p in c.payloads]

    @property
    def diagnostics(self) -> list[dict[str, Any]]:
        return [d for c in self.cells for d in c.diagnostics]


def _collect(nb: nbformat.NotebookNode, replies: dict[int, int | None], start: int = 0) -> list[CellResult]:
    out = []
    for index, cell in enumerate(nb.cells[start:], start):
        result = CellResult(index=index, source=cell.source, execution_count=cell.get("execution_count"),
                            reply_count=replies.get(index), outputs=[dict(o) for o in cell.outputs])
        for payload in result.payloads:
            validate_payload(payload)
        out.append(result)
    return out


def _record_replies(client: NotebookClient) -> dict[int, int | None]:
    replies: dict[int, int | None] = {}

    def on_cell_executed(cell: Any, cell_index: int, execute_reply: dict[str, Any]) -> None:
        replies[cell_index] = (execute_reply or {}).get("content", {}).get("execution_count")

    client.on_cell_executed = on_cell_executed
    return replies


async def arun_notebook(sources: Iterable[str], *, load_ext: bool = True, plain: bool = False) -> NotebookResult:
    """Execute ``sources`` as the cells of a new notebook in a fresh kernel (``plain``: started
    with ``python -m ipykernel_launcher``, not forked from the fork server)."""
    cells = (["%load_ext gradwatch"] if load_ext else []) + list(sources)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in cells]
    client = _client(nb, async_km=True, plain=plain)
    replies = _record_replies(client)
    await client.async_execute()
    return NotebookResult(_collect(nb, replies))


def run_notebook(sources: Iterable[str], *, load_ext: bool = True, plain: bool = False) -> NotebookResult:
    return asyncio.run(arun_notebook(sources, load_ext=load_ext, plain=plain))


class KernelSession:
    """One long-lived kernel for tests that run many independent cells (``run`` one at a time).

    Every cell is appended to one notebook, so execution counts are the notebook's own.
    """

    def __init__(self, load_ext: bool = True) -> None:
        self.nb = nbformat.v4.new_notebook()
        self.client = _client(self.nb, async_km=False)
        self._replies = _record_replies(self.client)
        self._ctx = None
        self._load_ext = load_ext

    def __enter__(self) -> "KernelSession":
        self._ctx = self.client.setup_kernel()
        self._ctx.__enter__()
        if self._load_ext:
            cell = self.run("%load_ext gradwatch")
            assert not cell.errors and not cell.outputs, cell.outputs
        return self

    def __exit__(self, *exc: Any) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            ctx.__exit__(*exc)

    def run(self, source: str) -> CellResult:
        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        index = len(self.nb.cells) - 1
        self.client.execute_cell(cell, index, execution_count=self.client.code_cells_executed + 1)
        return _collect(self.nb, self._replies, start=index)[0]

    def value(self, expression: str) -> Any:
        """Evaluate ``expression`` in the kernel; its ``repr`` must be a Python literal."""
        import ast

        cell = self.run(f"print(repr({expression}))")
        assert not cell.errors, cell.traceback_text()
        return ast.literal_eval(cell.stream().strip())


# --- fixtures -----------------------------------------------------------------------------------
@dataclass
class FixtureCell:
    source: str  # what the notebook cell holds
    gradwatch: bool
    options: str
    first_line: int  # file line (1-based) that is line 1 of the cell
    offset: int  # cell line = file line + offset


@dataclass
class Fixture:
    path: Path
    cells: list[FixtureCell]
    # (code, index into cells, cell line) -> how many diagnostics
    expected: Counter = field(default_factory=Counter)
    expect_error: str | None = None
    known_issue: str | None = None

    @property
    def id(self) -> str:
        return f"{self.path.parent.name}/{self.path.stem}"

    @property
    def group(self) -> str:
        return self.path.parent.name

    @property
    def codes(self) -> set[str]:
        return {code for code, _, _ in self.expected}


def fixture_paths(groups: Iterable[str] | None = None) -> list[Path]:
    paths = sorted(PROGRAMS.glob("*/*.py"))
    if groups is not None:
        wanted = set(groups)
        paths = [p for p in paths if p.parent.name in wanted]
    return paths


def _lines(path: Path) -> list[str]:
    lines = path.read_text().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _split_cells(lines: list[str]) -> list[FixtureCell]:
    """The notebook cells of a program (see the module docstring)."""
    cells: list[FixtureCell] = []
    starts = [i for i, line in enumerate(lines) if _SEPARATOR.match(line)]
    if not starts:
        return [FixtureCell("%%gradwatch\n" + "\n".join(lines), True, "", 1, 1)]
    preamble = lines[: starts[0]]
    if any(line.strip() and not line.lstrip().startswith("#") for line in preamble):
        cells.append(FixtureCell("\n".join(preamble), False, "", 1, 0))
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        body = lines[start:end]
        rest = _SEPARATOR.match(body[0])["rest"].strip()
        is_gw = rest == "gradwatch" or rest.startswith("gradwatch ")
        options = rest[len("gradwatch"):].strip() if is_gw else ""
        if is_gw:
            body = [f"%%gradwatch {options}".rstrip()] + body[1:]
        while len(body) > 1 and not body[-1].strip():
            body.pop()  # trailing blank lines of a cell do not matter
        cells.append(FixtureCell("\n".join(body), is_gw, options, start + 1, -start))
    return cells


def _cell_at(path: Path, cells: list[FixtureCell], file_line: int) -> tuple[int, int]:
    """(index into cells, cell line) of a file line."""
    for index, cell in reversed(list(enumerate(cells))):
        if cell.first_line <= file_line:
            return index, file_line + cell.offset
    raise ValueError(f"{path}:{file_line}: marker outside any cell")


def parse_fixture(path: Path) -> Fixture:
    lines = _lines(path)
    fixture = Fixture(path=path, cells=_split_cells(lines))
    m = _EXPECT_ERROR.match(lines[0]) if lines else None
    if m:
        fixture.expect_error = m["name"]
    for line in lines:
        k = _KNOWN_ISSUE.search(line)
        if k:
            fixture.known_issue = k["text"].strip()
    for file_line, line in enumerate(lines, 1):
        m = _EXPECT.search(line)
        if not m:
            continue
        index, cell_line = _cell_at(path, fixture.cells, file_line)
        for code in m["codes"].split():
            fixture.expected[(code, index, cell_line)] += 1
    return fixture


@dataclass
class RealProgram(Fixture):
    """A program of the real-bug corpus (tests/real/README.md)."""

    header: dict[str, str] = field(default_factory=dict)
    root_causes: set[tuple[int, int]] = field(default_factory=set)  # (index into cells, cell line)
    related: set[tuple[int, int]] = field(default_factory=set)

    @property
    def clean(self) -> bool:
        return self.header.get("bug-class", "").startswith("clean")


def real_paths(groups: Iterable[str] | None = None) -> list[Path]:
    paths = sorted(REAL_PROGRAMS.glob("*/*.py"))
    if groups is not None:
        wanted = set(groups)
        paths = [p for p in paths if p.parent.name in wanted]
    return paths


def parse_real(path: Path) -> RealProgram:
    lines = _lines(path)
    program = RealProgram(path=path, cells=_split_cells(lines))
    first_cell = next((i for i, line in enumerate(lines) if _SEPARATOR.match(line)), len(lines))
    for line in lines[:first_cell]:
        m = _HEADER.match(line)
        if m:
            program.header[m["key"]] = m["value"]
    program.expect_error = program.header.get("expect-error") or None
    for file_line, line in enumerate(lines, 1):
        for pattern, marks in ((_ROOT_CAUSE, program.root_causes), (_RELATED, program.related)):
            if pattern.search(line):
                marks.add(_cell_at(path, program.cells, file_line))
    missing = {"source", "bug-class", "symptom", "diagnosis"} - set(program.header)
    if missing:
        raise ValueError(f"{path}: header lacks {', '.join(sorted(missing))}")
    if program.clean == bool(program.root_causes):
        raise ValueError(f"{path}: a buggy program needs a `# root-cause` line, a clean one has none")
    return program


@dataclass
class FixtureResult:
    fixture: Fixture
    notebook: NotebookResult
    expected: Counter  # (code, execution count, line)
    actual: Counter  # (code, execution count or None, line or None)
    seconds: float = 0.0

    @property
    def fixture_cells(self) -> list[CellResult]:
        return self.notebook.cells[1:]  # after the %load_ext cell

    def restricted(self, codes: set[str]) -> tuple[Counter, Counter]:
        def keep(c: Counter) -> Counter:
            return Counter({k: v for k, v in c.items() if k[0] in codes})
        return keep(self.expected), keep(self.actual)


def _fixture_result(fixture: Fixture, notebook: NotebookResult) -> FixtureResult:
    cells = notebook.cells[1:]
    expected: Counter = Counter()
    for (code, index, line), n in fixture.expected.items():
        expected[(code, cells[index].execution_count, line)] += n
    actual: Counter = Counter()
    for d in notebook.diagnostics:
        loc = d["location"] or {}
        actual[(d["code"], loc.get("cell"), loc.get("line"))] += 1
    return FixtureResult(fixture, notebook, expected, actual)


async def arun_fixture(fixture: Fixture) -> FixtureResult:
    start = time.perf_counter()
    notebook = await arun_notebook([c.source for c in fixture.cells])
    result = _fixture_result(fixture, notebook)
    result.seconds = time.perf_counter() - start
    return result


def run_fixture(fixture: Fixture | Path) -> FixtureResult:
    if isinstance(fixture, Path):
        fixture = parse_fixture(fixture)
    return asyncio.run(arun_fixture(fixture))


def default_workers() -> int:
    return int(os.environ.get("GRADWATCH_TEST_WORKERS", "0")) or min(4, (os.cpu_count() or 1) + 1)


async def arun_fixtures(fixtures: list[Fixture],
                        workers: int | None = None) -> dict[str, FixtureResult | BaseException]:
    """Run fixtures, each in a fresh kernel, ``workers`` kernels at a time."""
    sem = asyncio.Semaphore(workers or default_workers())
    results: dict[str, FixtureResult | BaseException] = {}

    async def one(f: Fixture) -> None:
        async with sem:
            try:
                results[f.id] = await arun_fixture(f)
            except Exception as exc:  # reported by the test for that fixture
                results[f.id] = exc

    await asyncio.gather(*(one(f) for f in fixtures))
    return results


def run_fixtures(fixtures: list[Fixture], workers: int | None = None) -> dict[str, FixtureResult | BaseException]:
    return asyncio.run(arun_fixtures(fixtures, workers))


def unwatched(fixture: Fixture) -> Fixture:
    """The same program with every ``%%gradwatch`` line turned into a comment (same lines)."""
    cells = []
    for c in fixture.cells:
        source = c.source
        if c.gradwatch:
            source = "# (gradwatch off)" + source[source.index("\n"):] if "\n" in source else "# (gradwatch off)"
        cells.append(FixtureCell(source, False, "", c.first_line, c.offset))
    return Fixture(path=fixture.path, cells=cells, expected=Counter(), expect_error=fixture.expect_error,
                   known_issue=fixture.known_issue)


_NEWS_LINE = re.compile(r"^gradwatch GW\d+: .*; the full report follows when the cell ends\n", re.MULTILINE)


def behaviour(cell: CellResult) -> dict[str, Any]:
    """What a user sees of a cell, gradwatch's own output left out: printed text, results,
    other displays, and the exception's type and message."""
    shown = [{k: v for k, v in o.get("data", {}).items()} for o in cell.outputs
             if o.get("output_type") in ("display_data", "execute_result") and MIME not in o.get("data", {})]
    err = cell.error
    # a cell's file name has the kernel's pid and a hash of the cell's text: not behaviour
    cell_file = re.compile(r"/tmp/ipykernel_\d+/\d+\.py")
    stderr = _NEWS_LINE.sub("", cell.stream("stderr"))  # gradwatch's news while the cell runs
    return {"stdout": cell.stream("stdout"), "stderr": cell_file.sub("<cell>", stderr),
            "shown": shown, "error": (err["ename"], cell_file.sub("<cell>", err["evalue"])) if err else None}


def registry_codes() -> dict[str, str]:
    """code -> rule name, from the engine's registry (imports torch)."""
    from gradwatch.rules import registry

    return {r.code: r.name for r in registry.rules()}


# --- the real-bug corpus -----------------------------------------------------------------------
@dataclass
class RealScore:
    """How gradwatch did on one program of the real-bug corpus (tests/real/README.md)."""

    program: RealProgram
    findings: list[tuple[str, str, int | None, int | None]]  # warnings and errors: (code, severity, cell, line)
    localized: bool
    detected: bool
    false_alarm: bool
    outcome_changed: list[int]  # execution counts of the cells whose outcome differs
    raised: list[str] = field(default_factory=list)  # exception types of the watched run's cells
    error: str | None = None  # the harness could not run it

    @property
    def verdict(self) -> str:
        if self.error:
            return "not run"
        if self.program.clean:
            return "FALSE ALARM" if self.false_alarm else "quiet"
        return "localized" if self.localized else "detected" if self.detected else "missed"


def score_real(program: RealProgram, watched: FixtureResult | BaseException,
               plain: FixtureResult | BaseException) -> RealScore:
    for result in (watched, plain):
        if isinstance(result, BaseException):
            return RealScore(program, [], False, False, False, [], error=f"{type(result).__name__}: {result}")
    assert isinstance(watched, FixtureResult) and isinstance(plain, FixtureResult)
    cells = watched.fixture_cells
    roots = {(cells[index].execution_count, line) for index, line in program.root_causes}
    findings = [(d["code"], d["severity"], (d["location"] or {}).get("cell"), (d["location"] or {}).get("line"))
                for d in watched.notebook.diagnostics if d["severity"] in ("error", "warning")]
    changed = [w.execution_count for w, p in zip(cells, plain.fixture_cells, strict=False)
               if behaviour(w) != behaviour(p)]
    if len(cells) != len(plain.fixture_cells):
        changed.append(-1)
    return RealScore(program, findings,
                     localized=any((cell, line) in roots for _, _, cell, line in findings),
                     detected=bool(findings), false_alarm=program.clean and bool(findings),
                     outcome_changed=changed, raised=[c.error["ename"] for c in cells if c.error])


async def arun_real(programs: list[RealProgram], workers: int | None = None) -> dict[str, RealScore]:
    """Each program watched and plain (``unwatched``), each in a fresh kernel; program id -> score."""
    watched = await arun_fixtures(list(programs), workers)
    plain = await arun_fixtures([unwatched(p) for p in programs], workers)
    return {p.id: score_real(p, watched[p.id], plain[p.id]) for p in programs}


def run_real(programs: list[RealProgram], workers: int | None = None) -> dict[str, RealScore]:
    return asyncio.run(arun_real(programs, workers))
