"""The training-dynamics fixtures (GW101-GW115) run in-process through IPython's own cell
machinery (``%%gradwatch`` cells, real cell numbers and lines); the real-kernel run of the same
fixtures is the corpus test in ``tests/kernel``. Clean fixtures (``clean_*.py`` and the shared
``clean/`` group, which holds the official tutorials' loops) must not get any GW1xx finding."""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "kernel"))
import harness  # noqa: E402
from test_messages import assert_worded  # noqa: E402

GROUPS = sorted(p.name for p in harness.PROGRAMS.glob("gw1[0-9][0-9]_*") if p.is_dir())
FIXTURES = harness.fixture_paths(GROUPS)
CLEAN = harness.fixture_paths(["clean"])


def run_in_process(shell, path: Path) -> tuple[Counter, Counter, list]:
    """(expected, actual, diagnostics); keys are (code, cell number, line)."""
    import gradwatch

    fixture = harness.parse_fixture(path)
    shell.reset(new_session=False)
    expected, actual, diags = Counter(), Counter(), []
    for index, cell in enumerate(fixture.cells):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gradwatch._set_last_report(None)
            result = shell.run_cell(cell.source, store_history=True)
        count = result.execution_count
        for (code, i, line), n in fixture.expected.items():
            if i == index:
                expected[(code, count, line)] += n
        if fixture.expect_error is None:
            assert result.error_in_exec is None, f"{path.name}: {result.error_in_exec!r}"
        report = gradwatch.last_report() if cell.gradwatch else None
        for d in (report or ()):
            loc = d.location
            actual[(d.code, loc.cell if loc else None, loc.line if loc else None)] += 1
            diags.append(d)
    return expected, actual, diags


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture(shell, path):
    expected, actual, diags = run_in_process(shell, path)
    detail = "\n".join(f"  {d.code} line {d.location and d.location.line}: {d.message}" for d in diags)
    assert actual == expected, f"{path.name}\n{detail}"
    assert_worded(diags, path.name)  # a short message and a help line (issue 13, section 2)
    if path.stem.startswith("clean"):
        assert not expected
    else:
        assert any(code == _code(path) for code, _, _ in expected), "a buggy fixture expects its own rule"


@pytest.mark.parametrize("path", CLEAN, ids=lambda p: p.stem)
def test_shared_clean_programs_get_no_dynamics_finding(shell, path):
    _, actual, diags = run_in_process(shell, path)
    found = [d for d in diags if d.code.startswith("GW1")]
    assert not found, "\n".join(f"{d.code}: {d.message}" for d in found)


def _code(path: Path) -> str:
    return "GW" + path.parent.name[2:5]
