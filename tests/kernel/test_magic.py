"""``%%gradwatch`` / ``%gradwatch`` through a real kernel: options, errors, display, magics in
the body, syntax errors, exceptions, ``%gradwatch on|off|status``, ``%gradwatch rules|explain``
and the ``?`` help, bounded output."""

from __future__ import annotations

import re

import pytest

import harness
from gradwatch import docs

pytestmark = pytest.mark.kernel

MIME = harness.MIME
SEED = harness.REPO / "examples" / "seed"
PROGRAM1 = (SEED / "program1_no_requires_grad.py").read_text()
PROGRAM2 = (SEED / "program2_correct.py").read_text()
OPTIONS = "Valid options: --select CODES, --ignore CODES, --strict, --fail-fast, --quiet, --trace-steps N"

UNUSED_LAYER = """\
import torch
from torch import nn
torch.manual_seed(0)
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 1)
    def forward(self, x):
        return self.fc1(x).sum(dim=1, keepdim=True)
model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(16, 4), torch.randn(16, 1)
for epoch in range(3):
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
"""

DETACH_LOOP = """\
import torch
from torch import nn
torch.manual_seed(0)
backbone, head = nn.Linear(6, 16), nn.Linear(16, 2)
optimizer = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=0.01)
x, target = torch.randn(24, 6), torch.randint(0, 2, (24,))
for epoch in range(3):
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(head(backbone(x).detach()), target)
    loss.backward()
    optimizer.step()
"""


def _codes(cell):
    return [d["code"] for d in cell.diagnostics]


# --- options and usage errors ---------------------------------------------------------------
def test_unknown_option_is_a_usage_error_listing_the_valid_ones(kernel):
    cell = kernel.run("%%gradwatch --bogus\nprint('ran')")
    assert cell.stream("stderr") == f"UsageError: unrecognized arguments: --bogus. {OPTIONS}\n"
    assert cell.stream("stdout") == "" and cell.payloads == []


def test_unknown_rule_code_is_named(kernel):
    for option in ("--select GW999", "--ignore GW1,XX7"):
        cell = kernel.run(f"%%gradwatch {option}\nprint('ran')")
        err = cell.stream("stderr")
        bad = "GW999" if "GW999" in option else "XX7"
        assert err.startswith(f"UsageError: unknown rule code '{bad}'; known codes: GW001, GW002,"), err
        assert "GW010" in err and cell.stream("stdout") == "" and cell.payloads == []


@pytest.mark.parametrize("option", ["--select ,,,", "--select=,", "--ignore ,", "--select GW001 --select ,"])
def test_empty_code_list_is_a_usage_error(kernel, option):
    # issue 11, item 9: an empty list used to mean "no selection" (every rule)
    cell = kernel.run(f"%%gradwatch {option}\nprint('ran')")
    name = "--ignore" if "--ignore" in option else "--select"
    assert cell.stream("stderr") == f"UsageError: {name} needs at least one rule code\n"
    assert cell.stream("stdout") == "" and cell.payloads == []
    line = kernel.run(f"%gradwatch on {option}")
    assert line.stream("stderr") == f"UsageError: {name} needs at least one rule code\n"
    assert kernel.run("%gradwatch status").stream() == "gradwatch is off\n"


def test_cell_magic_refuses_on_off(kernel):
    cell = kernel.run("%%gradwatch on\nprint('ran')")
    assert cell.stream("stderr") == "UsageError: %%gradwatch takes no on/off/status; use the line magic %gradwatch\n"


@pytest.mark.parametrize("option, codes", [
    ("", ["GW001", "GW001"]),
    ("--select GW001", ["GW001", "GW001"]),
    ("--select GW00", ["GW001", "GW001"]),
    ("--select gw00", ["GW001", "GW001"]),
    ("--select GW002,GW003", []),
    ("--ignore GW0,GW1", []),
    ("--select GW00 --ignore gw001", []),
    ("--select GW0 --ignore GW002", ["GW001", "GW001"]),
    ("--select GW002 --select GW001", ["GW001", "GW001"]),
])
def test_select_and_ignore(kernel, option, codes):
    cell = kernel.run(f"%%gradwatch {option}\n" + PROGRAM1)
    assert _codes(cell) == codes
    assert len(cell.payloads) == 1
    # the user's error is the same whatever is selected
    assert cell.error["ename"] == "RuntimeError"
    assert ("gradwatch GW001" in cell.traceback_text()) == bool(codes)


def test_strict_raises_after_a_cell_with_problems(kernel):
    cell = kernel.run("%%gradwatch --strict\n" + UNUSED_LAYER)
    assert _codes(cell) == ["GW006"]
    assert cell.error["ename"] == "StrictModeError"
    assert cell.error["evalue"] == "gradwatch --strict: 1 problem(s): GW006"
    clean = kernel.run("%%gradwatch --strict --ignore GW006\n" + UNUSED_LAYER)
    assert clean.errors == [] and _codes(clean) == []


def test_quiet_attaches_the_payload_only(kernel):
    cell = kernel.run("%%gradwatch --quiet\n" + UNUSED_LAYER)
    [out] = cell.gradwatch_outputs
    assert set(out["data"]) == {MIME}
    assert [d["code"] for d in out["data"][MIME]["diagnostics"]] == ["GW006"]
    loud = kernel.run("%%gradwatch\n" + UNUSED_LAYER)
    [out] = loud.gradwatch_outputs
    assert set(out["data"]) == {MIME, "text/html", "text/plain"}
    assert "GW006" in out["data"]["text/html"] and "GW006" in out["data"]["text/plain"]


def _shown(cell):
    """The one display output of a cell that displays one thing (and prints nothing)."""
    assert cell.errors == [] and cell.stream() == "" and cell.stream("stderr") == "", cell.outputs
    [out] = cell.outputs
    assert out["output_type"] == "display_data"
    return out["data"]


# --- what --select/--ignore hid (issue 13, section 2) ----------------------------------------------
@pytest.mark.parametrize("option", ["--ignore GW001", "--select GW002", "--select GW0 --ignore GW00"])
def test_hidden_findings_are_counted_not_hidden_silently(kernel, option):
    cell = kernel.run(f"%%gradwatch {option}\n" + PROGRAM1)
    [out] = cell.gradwatch_outputs
    assert out["data"][MIME]["diagnostics"] == []
    assert out["data"]["text/plain"] == "gradwatch: no problems found (2 ignored: GW001)"
    assert out["data"]["text/html"] == "<div class='gradwatch'>gradwatch: no problems found (2 ignored: GW001)</div>"
    assert cell.error["ename"] == "RuntimeError"  # the user's error, as without the option


def test_nothing_hidden_says_plainly_no_problems(kernel):
    for source in ("%%gradwatch --ignore GW006\n" + PROGRAM2, "%%gradwatch\n" + PROGRAM2):
        [out] = kernel.run(source).gradwatch_outputs
        assert out["data"]["text/plain"] == "gradwatch: no problems found"


def test_hidden_findings_of_other_rules(kernel):
    assert kernel.run("%%gradwatch --ignore GW006\n" + UNUSED_LAYER).gradwatch_outputs[0]["data"]["text/plain"] \
        == "gradwatch: no problems found (1 ignored: GW006)"
    [out] = kernel.run("%%gradwatch --select GW006\n" + PROGRAM1).gradwatch_outputs
    assert out["data"]["text/plain"] == "gradwatch: no problems found (2 ignored: GW001)"


def test_hidden_findings_beside_shown_ones(kernel):
    # precedence among the selected rules only: GW006 reports what the hidden GW002 would explain
    cell = kernel.run("%%gradwatch --select GW006\n" + DETACH_LOOP)
    [out] = cell.gradwatch_outputs
    assert _codes(cell) == ["GW006"]
    assert out["data"]["text/plain"].splitlines()[0] == "gradwatch: 1 problem(s) (1 ignored: GW002)"
    assert "<div class='gradwatch-summary'>gradwatch: 1 problem(s) (1 ignored: GW002)</div>" in out["data"]["text/html"]


# --- rule docs and help in the notebook (issue 13, section 6) ------------------------------------
@pytest.mark.parametrize("code", ["GW001", "gw105", " GW900"])
def test_explain_shows_the_rule_page(kernel, code):
    data = _shown(kernel.run(f"%gradwatch explain {code}"))
    page = docs.page(code)
    assert set(data) == {"text/markdown", "text/plain"}
    assert data["text/markdown"] == data["text/plain"] == page
    assert page.startswith(f"# {code.strip().upper()} ") and "## What it does" in page


def test_explain_errors(kernel):
    unknown = kernel.run("%gradwatch explain GW999")
    assert unknown.stream("stderr").startswith("UsageError: unknown rule code 'GW999'; known codes: GW001, ")
    assert [o["output_type"] for o in unknown.outputs] == ["stream"]
    assert kernel.run("%gradwatch explain GW0").stream("stderr").startswith("UsageError: unknown rule code 'GW0';")
    missing = kernel.run("%gradwatch explain")
    assert missing.stream("stderr") == ("UsageError: %gradwatch explain needs a rule code, e.g. %gradwatch "
                                        "explain GW001 (%gradwatch rules lists them)\n")
    assert kernel.run("%gradwatch on GW001").stream("stderr").startswith("UsageError: unrecognized arguments: GW001.")
    assert kernel.run("%%gradwatch explain GW001\nprint('ran')").stream("stderr") \
        == "UsageError: %%gradwatch takes no explain; use the line magic %gradwatch explain\n"


def test_rules_lists_every_rule(kernel):
    data = _shown(kernel.run("%gradwatch rules"))
    markdown, text = data["text/markdown"], data["text/plain"]
    codes = harness.registry_codes()
    assert markdown.startswith("| code | name | severity | what it finds |\n|---|---|---|---|\n")
    for code, name in codes.items():
        assert f"| {code} | `{name}` |" in markdown
        assert re.search(rf"^{code}  {re.escape(name)} +(error|warning|info) +\S", text, re.M), code
    assert "`%gradwatch explain CODE`" in markdown and "%gradwatch explain CODE" in text
    assert kernel.run("%gradwatch rules GW001").stream("stderr").startswith("UsageError: %gradwatch rules takes no")


def _help(kernel, source: str) -> str:
    """What ``source`` (``%%gradwatch?``) pages: the execute_reply's "page" payload."""
    client, pages = kernel.client, []
    previous = client.on_cell_executed

    def on_cell_executed(cell, cell_index, execute_reply):
        pages.extend(p["data"]["text/plain"] for p in execute_reply["content"].get("payload", [])
                     if p.get("source") == "page")
        return previous(cell=cell, cell_index=cell_index, execute_reply=execute_reply)

    client.on_cell_executed = on_cell_executed
    try:
        cell = kernel.run(source)
    finally:
        client.on_cell_executed = previous
    assert cell.errors == [] and len(pages) == 1, (cell.outputs, pages)
    return re.sub(r"\x1b\[[0-9;]*m", "", pages[0])


def test_cell_magic_help(kernel):
    text = _help(kernel, "%%gradwatch?")
    assert "::" not in text
    assert "Usage: %%gradwatch [options]\n" in text
    assert "%gradwatch [" not in text.replace("%%gradwatch", "")
    for word in ("on", "off", "status"):
        assert f"{{{word}" not in text and f"{word},off" not in text and f"({word})" not in text
    for option in ("--select CODES", "--ignore CODES", "--strict", "--fail-fast", "--quiet", "--trace-steps N"):
        assert option in text
    examples = text.split("Examples:")[1].split("options:")[0]
    assert examples.count("%%gradwatch") == 2
    assert "%gradwatch rules" in text and "%gradwatch explain CODE" in text


def test_line_magic_help(kernel):
    text = _help(kernel, "%gradwatch?")
    assert "::" not in text
    assert "Usage: %gradwatch on [options] | off | status\n" in text
    for usage in ("%gradwatch rules", "%gradwatch explain CODE", "python -m gradwatch rule CODE"):
        assert usage in text


# --- running the body like IPython does ---------------------------------------------------------
def test_last_expression_is_displayed(kernel):
    cell = kernel.run("%%gradwatch\nimport torch\nt = torch.ones(2, requires_grad=True)\n(t * 2).sum().item() + 40")
    [result] = cell.results
    assert result["data"]["text/plain"] == "44.0"
    assert result["execution_count"] == cell.execution_count
    assert cell.payloads[0]["diagnostics"] == []


def test_magics_in_the_body_work(kernel):
    cell = kernel.run("%%gradwatch\n%time z = 3\nzz = %pwd\n!echo shell-ok\nz + len(zz) * 0")
    assert "Wall time" in cell.stream()
    assert "shell-ok" in cell.stream()
    assert cell.results[0]["data"]["text/plain"] == "3"
    assert cell.errors == [] and cell.payloads[0]["diagnostics"] == []


def test_diagnostic_after_a_magic_line_keeps_its_line(kernel):
    body = "%%gradwatch --select GW001\n%time _ = 1\n" + PROGRAM1
    cell = kernel.run(body)
    assert [(d["location"]["line"], d["location"]["column"]) for d in cell.diagnostics] == [(10, 5), (11, 5)]


# issue 11, item 3: IPython's own cell semantics (top-level await, AST transformers,
# ast_node_interactivity, a trailing semicolon) hold in a %%gradwatch cell
def test_top_level_await_runs(kernel):
    cell = kernel.run("%%gradwatch\nimport asyncio\nawait asyncio.sleep(0)\n"
                      "x = await asyncio.sleep(0.01, result=41)\nx + 1")
    assert cell.errors == [], cell.traceback_text()
    [result] = cell.results
    assert result["data"]["text/plain"] == "42" and result["execution_count"] == cell.execution_count
    [payload] = cell.payloads
    assert payload["cell"]["execution_count"] == cell.execution_count and payload["diagnostics"] == []
    assert cell.outputs[-1]["data"].get(MIME) == payload  # the report comes after the cell's output


def test_top_level_await_keeps_lines_notes_and_the_exception(kernel):
    cell = kernel.run("%%gradwatch --select GW001\nimport asyncio\nawait asyncio.sleep(0)\n" + PROGRAM1)
    assert [(d["location"]["cell"], d["location"]["line"], d["location"]["column"]) for d in cell.diagnostics] \
        == [(cell.execution_count, 11, 5), (cell.execution_count, 12, 5)]
    assert cell.error["ename"] == "RuntimeError"
    tb = cell.traceback_text()
    assert "gradwatch GW001: `w` is created without `requires_grad=True`" in tb
    assert f"Cell In[{cell.execution_count}], line " in tb and "magic.py" not in tb


def test_await_inside_a_function_or_comprehension_is_unchanged(kernel):
    cell = kernel.run("%%gradwatch\nimport asyncio\nasync def f():\n    return 7\n"
                      "[await f() for _ in range(2)]")
    assert cell.errors == [], cell.traceback_text()
    assert cell.results[0]["data"]["text/plain"] == "[7, 7]"


NEGATE_INTS = """\
import ast
class _NegateInts(ast.NodeTransformer):
    def visit_Constant(self, node):
        if type(node.value) is int:
            return ast.copy_location(ast.Constant(-node.value), node)
        return node
get_ipython().ast_transformers.append(_NegateInts())
"""


def test_ast_transformers_are_applied(kernel):
    assert kernel.run(NEGATE_INTS).errors == []
    try:
        plain = kernel.run("print(3)")
        watched = kernel.run("%%gradwatch\nprint(3)")
    finally:
        kernel.run("get_ipython().ast_transformers.pop()")
    assert plain.stream() == watched.stream() == "-3\n"
    assert watched.errors == [] and len(watched.payloads) == 1


def test_input_rejected_by_an_ast_transformer_runs_nothing(kernel):
    reject = ("from IPython.core.error import InputRejected\nimport ast\n"
              "class _Reject(ast.NodeTransformer):\n"
              "    def visit_Name(self, node):\n"
              "        if node.id == 'forbidden':\n"
              "            raise InputRejected('no forbidden names')\n"
              "        return node\n"
              "get_ipython().ast_transformers.append(_Reject())\n")
    assert kernel.run(reject).errors == []
    try:
        watched = kernel.run("%%gradwatch\nprint('ran')\nforbidden")
    finally:
        kernel.run("get_ipython().ast_transformers.pop()")
    assert watched.error["ename"] == "InputRejected" and watched.stream() == ""
    assert watched.payloads == []


@pytest.mark.parametrize("mode, source, shown", [
    ("all", "1 + 1\nprint('p')\n2 + 2", ["2", "4"]),
    ("last_expr_or_assign", "y = 5", ["5"]),
    ("last_expr_or_assign", "y = 5;", []),
    ("none", "3 * 3", []),
    ("last_expr", "1 + 1\n2 + 3", ["5"]),
])
def test_ast_node_interactivity_is_honoured(kernel, mode, source, shown):
    kernel.run(f"%config InteractiveShell.ast_node_interactivity = {mode!r}")
    try:
        plain = kernel.run(source)
        watched = kernel.run("%%gradwatch\n" + source)
    finally:
        kernel.run("%config InteractiveShell.ast_node_interactivity = 'last_expr'")
    assert [r["data"]["text/plain"] for r in plain.results] == shown
    assert [r["data"]["text/plain"] for r in watched.results] == shown
    assert all(r["execution_count"] == watched.execution_count for r in watched.results)
    assert watched.stream() == plain.stream()


def test_trailing_semicolon_suppresses_the_result(kernel):
    plain = kernel.run("1 + 1;")
    watched = kernel.run("%%gradwatch\n1 + 1;")
    assert plain.results == watched.results == []
    assert watched.errors == [] and len(watched.payloads) == 1
    commented = kernel.run("%%gradwatch\n1 + 1;  # done")
    assert commented.results == []


def test_syntax_error_fails_as_without_the_magic(kernel):
    watched = kernel.run("%%gradwatch\nx = 1\ny = (\n")
    plain = kernel.run("x = 1\ny = (\n")
    assert watched.error["ename"] == plain.error["ename"] == "SyntaxError"
    assert watched.error["evalue"].startswith("incomplete input (") and watched.error["evalue"].endswith(", line 3)")
    assert plain.error["evalue"].endswith(", line 2)")  # the same source line: line 3 of the magic cell
    tb = watched.traceback_text()
    assert f"Cell In[{watched.execution_count}], line 3\n    y = (\n" in tb
    assert watched.payloads == []


def test_syntax_error_traceback_shows_no_gradwatch_frames(kernel):
    watched = kernel.run("%%gradwatch\nx = 1\ny = (\n")
    tb = watched.traceback_text()
    assert "magic.py" not in tb and "compilerop.py" not in tb, tb


def test_cell_without_torch_runs_normally_with_an_empty_payload(kernel):
    cell = kernel.run("%%gradwatch\ntotal = sum(range(5))\nprint('total', total)\ntotal * 2")
    assert cell.stream() == "total 10\n"
    assert cell.results[0]["data"]["text/plain"] == "20"
    assert cell.errors == []
    [payload] = cell.payloads
    assert payload == {"version": 1, "tool": {"name": "gradwatch", "version": payload["tool"]["version"]},
                       "cell": {"execution_count": cell.execution_count}, "diagnostics": []}


def test_user_exception_unchanged_without_diagnostics(kernel):
    cell = kernel.run("%%gradwatch\nraise ValueError('boom')")
    assert (cell.error["ename"], cell.error["evalue"]) == ("ValueError", "boom")
    assert "gradwatch" not in cell.traceback_text().split("ValueError: boom", 1)[1]
    assert cell.payloads[0]["diagnostics"] == []


def test_results_output_and_exceptions_same_with_and_without_gradwatch(kernel):
    seeded = "torch.manual_seed(0)\n"
    program = PROGRAM2.replace("import torch\n", "import torch\n" + seeded, 1) + "\nfloat(w.item())"
    plain = kernel.run(program)
    watched = kernel.run("%%gradwatch\n" + program)
    assert plain.stream() == watched.stream() and plain.stream().count("Epoch: ") == 10
    assert plain.results[0]["data"]["text/plain"] == watched.results[0]["data"]["text/plain"]
    assert plain.errors == watched.errors == []

    failing = PROGRAM1.replace("import torch\n", "import torch\n" + seeded, 1)
    plain = kernel.run(failing)
    watched = kernel.run("%%gradwatch\n" + failing)
    assert (plain.error["ename"], plain.error["evalue"]) == (watched.error["ename"], watched.error["evalue"])
    assert plain.stream() == watched.stream()
    assert "gradwatch GW001" not in plain.traceback_text()
    assert "gradwatch GW001: `w` is created without `requires_grad=True`" in watched.traceback_text()


# --- tracebacks as plain as without gradwatch (issue 13, section 5) ------------------------------
RAISES_IN_A_FUNCTION = """\
import math
values = [4.0, 1.0, 0.25, 0.0, -1.0]


def checked_root(value):
    if value < 0:
        raise ValueError(f"no real root of {value}")
    return math.sqrt(value)


roots = []
for value in values:
    roots.append(checked_root(value))
"""


def _plain_lines(cell) -> list[str]:
    """The traceback's lines (ANSI stripped), cell numbers normalised, gradwatch's note left out."""
    text = re.sub(r"Cell In\[\d+\]", "Cell In[N]", cell.traceback_text())
    return [line for line in text.splitlines() if not line.startswith("gradwatch GW")]


def _notes(cell) -> list[str]:
    return [line for line in cell.traceback_text().splitlines() if line.startswith("gradwatch GW")]


@pytest.mark.parametrize("body", [PROGRAM1, RAISES_IN_A_FUNCTION], ids=["backward", "function"])
def test_failing_cell_traceback_reads_as_without_the_magic(kernel, body):
    body = body.replace("import torch\n", "import torch\ntorch.manual_seed(0)\n", 1)
    # a first line in the plain cell too, so that both cells have the same line numbers
    plain = kernel.run("# the same line numbers as below\n" + body)
    watched = kernel.run("%%gradwatch\n" + body)
    assert (watched.error["ename"], watched.error["evalue"]) == (plain.error["ename"], plain.error["evalue"])
    assert _plain_lines(watched) == _plain_lines(plain), watched.traceback_text()
    text = watched.traceback_text()
    assert "skipping hidden" not in text and "run_cell_magic" not in text and "gradwatch/" not in text
    assert _notes(plain) == []
    if body.startswith("import torch"):
        # one line: the short message (its help is too long to join it; the report above has it)
        assert _notes(watched) == [
            f"gradwatch GW001: `w` is created without `requires_grad=True` (cell [{watched.execution_count}], "
            "line 10, col 5)"]
    else:
        assert _notes(watched) == []


def test_a_cell_gradwatch_could_not_watch_fails_plainly_too(kernel):
    kernel.run("import gradwatch.session as gw_session\ngw_init = gw_session.Watch.__init__\n"
               "def broken(self, **options):\n    raise RuntimeError('broken on purpose')\n"
               "gw_session.Watch.__init__ = broken")
    try:
        plain = kernel.run("# the same line numbers as below\n" + RAISES_IN_A_FUNCTION)
        watched = kernel.run("%%gradwatch\n" + RAISES_IN_A_FUNCTION)
    finally:
        kernel.run("gw_session.Watch.__init__ = gw_init")
    assert "gradwatch could not start and ran the cell unwatched: RuntimeError: broken on purpose" \
        in watched.stream("stderr")
    assert watched.payloads == [] and watched.error["ename"] == "ValueError"
    assert _plain_lines(watched) == _plain_lines(plain), watched.traceback_text()


def test_strict_mode_error_is_one_line_without_gradwatch_frames(kernel):
    cell = kernel.run("%%gradwatch --strict\n" + UNUSED_LAYER)
    lines = _plain_lines(cell)
    assert lines[1].split() == ["StrictModeError", "Traceback", "(most", "recent", "call", "last)"]
    assert lines[2:] == ["StrictModeError: gradwatch --strict: 1 problem(s): GW006"]


def test_traceback_of_a_cell_run_by_the_watched_cell_is_its_own(kernel):
    # a cell that the watched cell runs shows its own exception as IPython does; the watched
    # cell's own exception afterwards is still shown plainly
    cell = kernel.run("%%gradwatch\nget_ipython().run_cell('1/0')\nraise KeyError('after')")
    [inner, outer] = cell.errors
    assert inner["ename"] == "ZeroDivisionError" and outer["ename"] == "KeyError"
    assert "skipping hidden" not in harness._strip_ansi("\n".join(outer["traceback"]))


# --- %gradwatch on behaves like %%gradwatch (issue 13, section 4) ---------------------------------
def test_gradwatch_on_shows_what_the_cell_magic_shows(kernel):
    failing = PROGRAM1.replace("import torch\n", "import torch\ntorch.manual_seed(0)\n", 1)
    plain = kernel.run(failing)
    magic = kernel.run("%%gradwatch\n" + failing)
    kernel.run("%gradwatch on")
    try:
        on = kernel.run(failing)
        syntax = kernel.run("x = (\n")
    finally:
        kernel.run("%gradwatch off")
    kinds = [o["output_type"] for o in on.outputs]
    assert kinds == [o["output_type"] for o in magic.outputs] == ["display_data", "error"]
    assert _codes(on) == _codes(magic) == ["GW001", "GW001"]
    # the same note (its cell and line are the cell's own) and a traceback as without gradwatch
    n = on.execution_count
    assert _notes(on) == [f"gradwatch GW001: `w` is created without `requires_grad=True` (cell [{n}], line 9, col 5)"]
    assert _notes(magic) == [_notes(on)[0].replace(f"cell [{n}], line 9", f"cell [{magic.execution_count}], line 10")]
    assert _plain_lines(on) == _plain_lines(plain)
    # an error before the cell runs is IPython's own
    assert syntax.error["ename"] == "SyntaxError" and "gradwatch" not in syntax.traceback_text()


# --- news while a long cell runs, --fail-fast (issue 13, section 3) -------------------------------
NAN_AT_STEP_1500 = """\
%%gradwatch{options}
import torch
from torch import nn
torch.manual_seed(0)
model = nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(2000):
    x, y = torch.randn(16, 8), torch.randn(16, 1)
    if step == 1500:
        x[3, 2] = float("nan")
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    if step in (1000, 1700):
        print("step", step, flush=True)
"""

STEP_WITHOUT_BACKWARD = """\
%%gradwatch{options}
import torch
w = torch.zeros(3, requires_grad=True)
opt = torch.optim.SGD([w], lr=0.1)
for i in range(5):
    loss = (w - 1).pow(2).sum()
    if i != 2:
        loss.backward()
    opt.step()
print("done", flush=True)
"""
NEWS_GW105 = r"gradwatch GW105: the loss became NaN/Inf by step 1,5(\d\d) \(cell \[{n}\], line 13, col 5\)"


def test_an_error_in_a_long_cell_is_printed_at_once(kernel):
    cell = kernel.run(NAN_AT_STEP_1500.format(options=""))
    streams = [(o["output_type"], o.get("name")) for o in cell.outputs]
    assert streams == [("stream", "stdout"), ("stream", "stderr"), ("stream", "stdout"), ("display_data", None)]
    assert cell.outputs[0]["text"] == "step 1000\n" and cell.outputs[2]["text"] == "step 1700\n"
    news = re.fullmatch(NEWS_GW105.format(n=cell.execution_count) + "; the full report follows when the cell "
                        "ends\n", cell.outputs[1]["text"])
    assert news is not None, cell.outputs[1]["text"]
    assert 1 <= int(news.group(1)) <= 32  # the NaN is at step 1,501; losses are checked every 32
    assert _codes(cell) == ["GW105"] and cell.errors == []


def test_fail_fast_raises_at_the_first_error(kernel):
    cell = kernel.run(NAN_AT_STEP_1500.format(options=" --fail-fast"))
    assert cell.error["ename"] == "FailFastError"
    assert re.fullmatch(NEWS_GW105.format(n=cell.execution_count) + "; --fail-fast stopped the cell here",
                        cell.error["evalue"]), cell.error["evalue"]
    assert 1501 <= kernel.value("step") <= 1532
    assert cell.stream() == "step 1000\n" and cell.stream("stderr") == ""  # stopped before step 1700
    assert _codes(cell) == ["GW105"]
    assert kernel.value("issubclass(__import__('gradwatch').FailFastError, BaseException)") is True
    assert _plain_lines(cell)[2] == "Cell In[N], line 14"  # at the user's optimizer.step()


def test_a_step_without_backward_is_news_too_unless_ignored(kernel):
    cell = kernel.run(STEP_WITHOUT_BACKWARD.format(options=""))
    assert [o.get("name") for o in cell.outputs] == ["stderr", "stdout", None]
    assert cell.outputs[0]["text"] == (f"gradwatch GW103: `step()` ran without a `backward()` since the previous step "
                                       f"(cell [{cell.execution_count}], line 9, col 5); the full report follows "
                                       "when the cell ends\n")
    assert "GW103" in _codes(cell)
    for options in (" --ignore GW103", " --select GW101"):
        quiet = kernel.run(STEP_WITHOUT_BACKWARD.format(options=options))
        assert quiet.stream("stderr") == "" and quiet.stream() == "done\n" and "GW103" not in _codes(quiet)
    failed = kernel.run(STEP_WITHOUT_BACKWARD.format(options=" --fail-fast"))
    assert failed.error["ename"] == "FailFastError" and failed.stream() == ""
    assert kernel.value("i") == 2


def test_zero_grad_before_step_is_news(kernel):
    source = STEP_WITHOUT_BACKWARD.format(options="").replace(
        "    if i != 2:\n        loss.backward()\n", "    loss.backward()\n    opt.zero_grad()\n")
    cell = kernel.run(source)
    assert [o.get("name") for o in cell.outputs] == ["stderr", "stdout", None]
    assert cell.outputs[0]["text"] == ("gradwatch GW102: `zero_grad()` ran between `backward()` and `step()`, so the "
                                       f"step found no gradient (cell [{cell.execution_count}], line 8, col 5); "
                                       "the full report follows when the cell ends\n")
    assert "GW102" in _codes(cell)


def test_gradwatch_on_fail_fast(kernel):
    kernel.run("%gradwatch on --fail-fast")
    try:
        cell = kernel.run(STEP_WITHOUT_BACKWARD.format(options="").split("\n", 1)[1])
    finally:
        kernel.run("%gradwatch off")
    assert [o["output_type"] for o in cell.outputs] == ["display_data", "error"]
    assert cell.error["ename"] == "FailFastError" and kernel.value("i") == 2


def test_last_report_is_the_last_cells(kernel):
    kernel.run("%%gradwatch --select GW001\n" + PROGRAM1)
    assert kernel.value("__import__('gradwatch').last_report().codes") == ["GW001", "GW001"]
    kernel.run("%%gradwatch\nprint(1)")
    assert kernel.value("__import__('gradwatch').last_report().codes") == []
    assert kernel.value("type(__import__('gradwatch').last_report()).__name__") == "Report"


# --- %gradwatch on | off | status -------------------------------------------------------------
def test_line_magic_on_off_status(kernel):
    assert kernel.run("%gradwatch status").stream() == "gradwatch is off\n"
    assert kernel.run("%gradwatch").stream() == "gradwatch is off\n"
    on = kernel.run("%gradwatch on")
    assert on.outputs == []
    try:
        _while_on(kernel)
    finally:
        kernel.run("%gradwatch off")
    assert kernel.run("%gradwatch status").stream() == "gradwatch is off\n"
    after = kernel.run(PROGRAM1)
    assert after.payloads == [] and after.error["ename"] == "RuntimeError"


def _while_on(kernel):
    assert kernel.run("%gradwatch status").stream() == "gradwatch is on for every cell\n"
    watched = kernel.run(PROGRAM1)
    assert [d["code"] for d in watched.diagnostics] == ["GW001", "GW001"]
    assert watched.payloads[0]["cell"]["execution_count"] == watched.execution_count
    assert [d["location"]["line"] for d in watched.diagnostics] == [8, 9]  # no magic line in this cell
    assert [d["location"]["cell"] for d in watched.diagnostics] == [watched.execution_count] * 2
    assert watched.error["ename"] == "RuntimeError"
    quiet_cell = kernel.run("x_plain = 1")  # no backward, no diagnostics: nothing shown
    assert quiet_cell.outputs == []


def test_line_magic_on_with_options(kernel):
    kernel.run("%gradwatch on --quiet --ignore GW001")
    try:
        cell = kernel.run(UNUSED_LAYER)
        [out] = cell.gradwatch_outputs
        assert set(out["data"]) == {MIME}
        assert [d["code"] for d in out["data"][MIME]["diagnostics"]] == ["GW006"]
    finally:
        kernel.run("%gradwatch off")


# --- nesting: watch() in a watched cell, nested run_cell, %reload_ext (issue 11, items 10, 11) ----
NESTED_WATCH = """\
import gradwatch, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with gradwatch.watch() as inner:
{body}
nested_warnings = [str(w.message) for w in caught if not issubclass(w.category, gradwatch.GradwatchWarning)]
"""


def _indented(program: str, spaces: int = 8) -> str:
    return "\n".join((" " * spaces + line) if line.strip() else "" for line in program.split("\n"))


def test_watch_inside_a_watched_cell_is_a_no_op_with_a_warning(kernel):
    cell = kernel.run("%%gradwatch\n" + NESTED_WATCH.format(body=_indented(UNUSED_LAYER)))
    assert cell.errors == [], cell.traceback_text()
    assert _codes(cell) == ["GW006"]  # the enclosing cell's session saw the training
    [message] = kernel.value("nested_warnings")
    assert message.startswith("gradwatch.watch() inside a cell that gradwatch already watches does nothing")
    # the inner `as` target is the enclosing cell's report, filled when the cell ends
    assert kernel.value("inner is __import__('gradwatch').last_report()") is True
    assert kernel.value("inner.codes") == ["GW006"]


def test_watch_inside_a_cell_watched_by_gradwatch_on_is_a_no_op(kernel):
    kernel.run("%gradwatch on")
    try:
        cell = kernel.run(NESTED_WATCH.format(body=_indented(UNUSED_LAYER)))
    finally:
        kernel.run("%gradwatch off")
    assert cell.errors == [], cell.traceback_text()
    assert _codes(cell) == ["GW006"]
    assert len(kernel.value("nested_warnings")) == 1


def test_watch_after_a_watched_cell_works_again(kernel):
    kernel.run("%%gradwatch\nx_after = 1")
    cell = kernel.run(NESTED_WATCH.format(body=_indented(UNUSED_LAYER)))
    assert cell.errors == [] and cell.payloads == []
    assert kernel.value("nested_warnings") == []
    assert kernel.value("inner.codes") == ["GW006"]


def test_gradwatch_on_survives_a_nested_run_cell(kernel):
    kernel.run("%gradwatch on --select GW006")
    try:
        cell = kernel.run("get_ipython().run_cell('nested_value = 1')\n" + UNUSED_LAYER)
        status = kernel.run("%gradwatch status").stream()
    finally:
        kernel.run("%gradwatch off")
    assert cell.errors == [], cell.traceback_text()
    assert _codes(cell) == ["GW006"]  # the training after the nested cell was watched
    [payload] = cell.payloads
    assert payload["cell"]["execution_count"] == cell.execution_count
    assert status == "gradwatch is on for every cell\n"
    assert kernel.value("nested_value") == 1


def test_gradwatch_on_with_a_rerun_of_a_training_cell(kernel):
    training = kernel.run(UNUSED_LAYER)
    kernel.run("%gradwatch on --select GW006")
    try:
        rerun = kernel.run(f"%rerun {training.execution_count}")
    finally:
        kernel.run("%gradwatch off")
    assert rerun.errors == [], rerun.traceback_text()
    assert _codes(rerun) == ["GW006"]


def test_a_watched_cell_inside_a_watched_cell_runs_in_the_enclosing_session(kernel):
    kernel.run("%gradwatch on --select GW006")
    try:
        cell = kernel.run("get_ipython().run_cell(" + repr("%%gradwatch --select GW001\n" + UNUSED_LAYER) + ")")
    finally:
        kernel.run("%gradwatch off")
    assert cell.errors == [], cell.traceback_text()
    assert "could not watch" not in cell.stream("stderr")
    assert "already watched" in cell.stream("stderr")
    assert _codes(cell) == ["GW006"]


def test_reload_ext_keeps_gradwatch_on(kernel):
    kernel.run("%gradwatch on --quiet --select GW006")
    try:
        reload = kernel.run("%reload_ext gradwatch")
        assert reload.errors == [], reload.traceback_text()
        assert kernel.run("%gradwatch status").stream() == "gradwatch is on for every cell\n"
        cell = kernel.run(UNUSED_LAYER)
        [out] = cell.gradwatch_outputs
        assert set(out["data"]) == {MIME}  # the options survive too
        assert [d["code"] for d in out["data"][MIME]["diagnostics"]] == ["GW006"]
    finally:
        kernel.run("%gradwatch off")


def test_unload_then_load_in_a_later_cell_starts_off(kernel):
    kernel.run("%gradwatch on")
    kernel.run("%unload_ext gradwatch")
    kernel.run("%load_ext gradwatch")
    assert kernel.run("%gradwatch status").stream() == "gradwatch is off\n"


# --- bounded output and memory over many backward() calls -----------------------------------------
MANY_STEPS = """\
%%gradwatch
import gc, time, tracemalloc
import torch
torch.manual_seed(0)
ws = [torch.randn(3) for _ in range(8)]
b = torch.zeros(3, requires_grad=True)
opt = torch.optim.SGD(ws + [b], lr=0.01)
x = torch.randn(3)
tracemalloc.start()
for i in range(5000):
    loss = ((x * ws[i % 8] + b) ** 2).sum()
    loss.backward()
    opt.step()
    opt.zero_grad()
    if i == 999:
        mem_1000 = tracemalloc.get_traced_memory()[0]
mem_5000 = tracemalloc.get_traced_memory()[0]
tracemalloc.stop()
"""


def test_thousands_of_backward_calls_stay_bounded(kernel):
    cell = kernel.run(MANY_STEPS)
    assert cell.errors == []
    codes = _codes(cell)
    assert codes.count("GW001") == 5  # eight untrained tensors, at most five shown
    assert all(codes.count(c) <= 5 for c in set(codes))
    [capped] = [d for d in cell.diagnostics if d["code"] == "GW001" and "more_not_shown" in d["evidence"]]
    assert capped["evidence"]["more_not_shown"] == 3
    grown = kernel.value("mem_5000 - mem_1000")
    assert grown < 256 * 1024, f"memory grew by {grown} bytes between step 1000 and 5000"
