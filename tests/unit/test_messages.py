"""Short messages and a help line (issue 13, section 2), as ruff words its diagnostics.

The message says what is wrong, naming the user's variable, short enough for the Problems
panel; the help line says why it matters and what to do. Checked on every diagnostic the
fixture corpus (in-process, through IPython's own cell machinery) and a few small programs make,
so every rule's wording is measured on what it really says.
"""

from __future__ import annotations

import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from gradwatch.diagnostics import Diagnostic, Severity
from gradwatch.rules import registry
from gradwatch.rules.base import all_names, short_names

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "kernel"))
import harness  # noqa: E402

# the longest message any rule may write for the corpus's names (the Problems panel cuts longer)
MAX_MESSAGE = 110


def wording_problems(d: Diagnostic) -> list[str]:
    """What is wrong with a diagnostic's wording (empty when it reads as wanted)."""
    problems = []
    if not d.message or len(d.message) > MAX_MESSAGE:
        problems.append(f"message of {len(d.message)} characters (at most {MAX_MESSAGE})")
    if "; " in d.message:
        problems.append("the message goes on past what is wrong (the rest belongs in the help)")
    if not d.help:
        problems.append("no help line")
    elif not (d.help[0].isupper() or d.help[0] == "`") or not d.help.endswith("."):
        problems.append("the help is not a sentence (capital or `name` first, full stop last)")
    elif d.help.startswith(("So ", "Them ")):
        problems.append("the help reads as the rest of the message")
    return problems


def assert_worded(diagnostics, where: str) -> set[str]:
    """Every diagnostic reads as wanted; the codes seen."""
    bad = [f"{d.code}: {p}\n    message: {d.message}\n    help: {d.help}"
           for d in diagnostics for p in wording_problems(d)]
    assert not bad, f"{where}\n" + "\n".join(bad)
    return {d.code for d in diagnostics}


def _run_fixture(shell, path: Path) -> list[Diagnostic]:
    import gradwatch

    fixture = harness.parse_fixture(path)
    shell.reset(new_session=False)
    found: list[Diagnostic] = []
    for cell in fixture.cells:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gradwatch._set_last_report(None)
            shell.run_cell(cell.source, store_history=True)
        report = gradwatch.last_report() if cell.gradwatch else None
        found.extend(report or ())
    return found


# The training-dynamics groups (GW1xx) run in-process in test_dynamics_fixtures.py, which checks
# their wording with `assert_worded`; the structural groups and the regressions run here.
STRUCTURAL = harness.fixture_paths(sorted(p.name for p in harness.PROGRAMS.iterdir()
                                          if p.is_dir() and p.name.startswith(("gw0", "regressions"))))


@pytest.mark.slow  # every structural fixture through a shell (~15 s): the full run and CI
def test_every_structural_fixture_gets_a_short_message_and_a_help_line(shell):
    seen: set[str] = set()
    for path in STRUCTURAL:
        seen |= assert_worded(_run_fixture(shell, path), f"{path.parent.name}/{path.name}")
    # the corpus triggers every structural rule it has a group for
    assert {f"GW{p.name[2:5]}" for p in harness.PROGRAMS.glob("gw0*") if p.is_dir()} <= seen


SETUP = "import torch\ntorch.manual_seed(0)\n"

# programs for the rules that explain a failing cell and have no fixture group of their own
FAILING_CELLS = {
    "GW011 rebound": ("""
        x, y = torch.randn(16, 3), torch.randn(16, 1)
        w = torch.randn(3, 1, requires_grad=True)
        for it in range(3):
            loss = ((x @ w - y) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                w = w - 0.1 * w.grad
            w.grad.zero_()
        """, "GW011"),
    "GW011 before backward": ("""
        x, y = torch.randn(16, 3), torch.randn(16, 1)
        w = torch.randn(3, 1, requires_grad=True)
        for it in range(3):
            w.grad.data.zero_()
            loss = ((x @ w - y) ** 2).mean()
            loss.backward()
        """, "GW011"),
    "GW012": ("""
        weights = torch.ones(4).requires_grad_()
        loss = (weights * 2).sum()
        loss.backward()
        weights[0] *= 1.5
        """, "GW012"),
}


@pytest.mark.parametrize("name", sorted(FAILING_CELLS))
def test_rules_that_explain_a_failing_cell_are_worded_alike(shell, name):
    import gradwatch

    source, code = FAILING_CELLS[name]
    shell.reset(new_session=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shell.run_cell(SETUP, store_history=True)
        gradwatch._set_last_report(None)
        result = shell.run_cell("%%gradwatch\n" + textwrap.dedent(source).strip("\n"), store_history=True)
    assert result.error_in_exec is not None
    report = gradwatch.last_report()
    assert report is not None and code in assert_worded(report, name)
    # the exception's note stays one line: the short message (and the help when it fits)
    [note] = [n for n in result.error_in_exec.__notes__ if n.startswith("gradwatch GW")]
    [cause] = [d for d in report if d.code == code]
    assert "\n" not in note and note.startswith(f"gradwatch {code}: {cause.message} (cell [")


def test_internal_error_is_worded_alike():
    d = registry.internal_diagnostic("KeyError: 'x'")
    assert assert_worded([d], "GW900") == {"GW900"}
    assert "KeyError: 'x'" in (d.help or "")


def test_the_check_catches_the_old_one_sentence_form():
    old = Diagnostic("GW001", "requires-grad-missing", Severity.ERROR,
                     "`w` is created without `requires_grad=True`, so no gradient can reach it and `opt` never "
                     "updates it; create it with `requires_grad=True`", None)
    assert wording_problems(old) == ["message of 136 characters (at most 110)",
                                     "the message goes on past what is wrong (the rest belongs in the help)",
                                     "no help line"]


def test_long_parameter_lists_are_cut_in_the_message_and_named_in_the_help():
    layers = [f"model.encoder.layers.{i}.self_attn.out_proj.weight" for i in range(6)]
    assert short_names(layers) == "`model.encoder.layers.0.self_attn.out_proj.weight` and 5 more"
    assert all_names(layers) == (" All of them: `model.encoder.layers.0.self_attn.out_proj.weight`, "
                                 "`model.encoder.layers.1.self_attn.out_proj.weight`, "
                                 "`model.encoder.layers.2.self_attn.out_proj.weight`, "
                                 "`model.encoder.layers.3.self_attn.out_proj.weight` and 2 more.")
    assert (short_names(["w", "b", "w"]), all_names(["w", "b"])) == ("`w`, `b`", "")
