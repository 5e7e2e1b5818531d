"""Every program of the fixture corpus, through a real kernel: the diagnostics are exactly the
expected ones (code, cell execution count, line), for the rules the registry has.

The format of the fixtures is described in ``harness.py``. The corpus runs once per session in
parallel kernels (``conftest.corpus_results``); each test checks one fixture.
"""

from __future__ import annotations

import pytest

import harness

pytestmark = pytest.mark.kernel


def _params():
    params = []
    for path in harness.fixture_paths():
        fixture = harness.parse_fixture(path)
        marks = []
        if fixture.known_issue:
            marks.append(pytest.mark.xfail(strict=True, reason=f"known issue: {fixture.known_issue}"))
        params.append(pytest.param(path, id=fixture.id, marks=marks))
    return params


def _describe(result: harness.FixtureResult) -> str:
    lines = []
    for d in result.notebook.diagnostics:
        loc = d["location"] or {}
        lines.append(f"  {d['code']} cell={loc.get('cell')} line={loc.get('line')} "
                     f"col={loc.get('column')}-{loc.get('end_column')}: {d['message'][:160]}")
    for cell in result.fixture_cells:
        if cell.error:
            lines.append(f"  cell {cell.execution_count} raised {cell.error['ename']}: {cell.error['evalue'][:200]}")
    return "\n".join(lines) or "  (no diagnostics, no errors)"


@pytest.fixture(scope="module")
def registry():
    return harness.registry_codes()


@pytest.mark.parametrize("fixture_path", _params())
def test_fixture(fixture_path, corpus_results, registry):
    fixture = harness.parse_fixture(fixture_path)
    result = corpus_results[fixture.id]
    if isinstance(result, BaseException):
        raise result
    load_cell = result.notebook.cells[0]
    assert load_cell.errors == [] and load_cell.outputs == [], load_cell.outputs

    cells = result.fixture_cells
    assert len(cells) == len(fixture.cells)
    # what the notebook shows; payloads name that count; one payload per %%gradwatch cell
    assert [c.execution_count for c in cells] == list(range(2, len(cells) + 2))
    for spec, cell in zip(fixture.cells, cells, strict=True):
        assert cell.reply_count == cell.execution_count
        if spec.gradwatch:
            assert len(cell.payloads) == 1, f"cell {cell.execution_count}: {len(cell.payloads)} payloads"
            assert cell.payloads[0]["cell"]["execution_count"] == cell.execution_count
        else:
            assert cell.payloads == []

    # the program fails exactly as it should (as it does without gradwatch)
    raised = [(c.execution_count, c.error["ename"]) for c in cells if c.error]
    if fixture.expect_error:
        last_watched = max(c.execution_count for s, c in zip(fixture.cells, cells, strict=True) if s.gradwatch)
        assert raised == [(last_watched, fixture.expect_error)], _describe(result)
    else:
        assert raised == [], _describe(result)

    expected, actual = result.restricted(set(registry))
    assert set(actual) == set(result.actual), "a diagnostic with a code that is not in the registry"
    assert dict(actual) == dict(expected), "\n" + _describe(result)


# Known engine bugs that change what the user sees (see tests/KNOWN_ISSUES.md), by fixture id.
BEHAVIOUR_ISSUES: dict[str, str] = {}


def _behaviour_params():
    params = []
    for path in harness.fixture_paths():
        fid = harness.parse_fixture(path).id
        marks = [pytest.mark.xfail(strict=True, reason=BEHAVIOUR_ISSUES[fid])] if fid in BEHAVIOUR_ISSUES else []
        params.append(pytest.param(path, id=fid, marks=marks))
    return params


@pytest.mark.parametrize("fixture_path", _behaviour_params())
def test_same_behaviour_without_gradwatch(fixture_path, corpus_results, unwatched_results):
    """Printed output, results, displays and exceptions (type and message) are the same with
    and without gradwatch, cell by cell."""
    fixture = harness.parse_fixture(fixture_path)
    watched, plain = corpus_results[fixture.id], unwatched_results[fixture.id]
    for result in (watched, plain):
        if isinstance(result, BaseException):
            raise result
    pairs = list(zip(watched.fixture_cells, plain.fixture_cells, strict=False))
    assert len(pairs) == len(fixture.cells)
    for w, p in pairs:
        assert harness.behaviour(w) == harness.behaviour(p), f"cell {w.execution_count}"


def test_corpus_covers_every_gw0_rule_in_several_fixtures():
    fixtures = [harness.parse_fixture(p) for p in harness.fixture_paths()]
    per_code: dict[str, int] = {}
    for f in fixtures:
        for code in f.codes:
            per_code[code] = per_code.get(code, 0) + 1
    for n in range(1, 11):
        code = f"GW{n:03d}"
        assert per_code.get(code, 0) >= 3, f"{code} has only {per_code.get(code, 0)} fixtures"
    own = [f for f in fixtures if f.group.startswith("gw0") or f.group == "clean"]
    assert len(own) >= 40
    clean = [f for f in fixtures if f.group.startswith("clean")]
    assert len(clean) >= 12 and all(not f.expected for f in clean)


def test_fixture_parser_maps_lines_to_cells(tmp_path):
    path = tmp_path / "grp" / "prog.py"
    path.parent.mkdir()
    path.write_text(
        "# expect-error: ValueError\n"          # 1  (not a cell: comments only)
        "# %%\n"                                # 2  plain cell, line 1
        "w = torch.randn(2)  # expect: GW001\n"  # 3  plain cell, line 2
        "\n"                                    # 4
        "# %% gradwatch --ignore GW006\n"       # 5  watched cell, line 1
        "x = 1\n"                               # 6
        "y = w * 2  # expect: GW002 GW002\n")   # 7  watched cell, line 3
    f = harness.parse_fixture(path)
    assert f.expect_error == "ValueError" and f.id == "grp/prog"
    assert [(c.gradwatch, c.options, c.first_line) for c in f.cells] == [(False, "", 2), (True, "--ignore GW006", 5)]
    assert f.cells[0].source == "# %%\nw = torch.randn(2)  # expect: GW001"
    assert f.cells[1].source.split("\n")[0] == "%%gradwatch --ignore GW006"
    assert dict(f.expected) == {("GW001", 0, 2): 1, ("GW002", 1, 3): 2}

    single = tmp_path / "grp" / "single.py"
    single.write_text("import torch\nw = torch.randn(2)  # expect: GW001\n")
    g = harness.parse_fixture(single)
    assert len(g.cells) == 1 and g.cells[0].source.startswith("%%gradwatch\nimport torch\n")
    assert dict(g.expected) == {("GW001", 0, 3): 1} and g.expect_error is None


def test_forked_and_plain_kernels_agree():
    """The fork server only saves imports: a fixture gives the same diagnostics, outputs and
    errors in a kernel started with ``python -m ipykernel_launcher``, and kernels are separate
    processes."""
    import asyncio

    path = harness.PROGRAMS / "gw001_requires_grad_missing" / "earlier_cell_all_constant.py"
    fixture = harness.parse_fixture(path)
    sources = [c.source for c in fixture.cells] + ["import os; print(os.getpid())"]

    async def both():
        return await asyncio.gather(harness.arun_notebook(sources), harness.arun_notebook(sources),
                                    harness.arun_notebook(sources, plain=True))

    forked, forked2, plain = asyncio.run(both())
    for nb in (forked, forked2):
        assert [c.diagnostics for c in nb.cells] == [c.diagnostics for c in plain.cells]
        assert [c.stream() for c in nb.cells[:-1]] == [c.stream() for c in plain.cells[:-1]]
        assert [(e["ename"], e["evalue"]) for c in nb.cells for e in c.errors] == \
            [(e["ename"], e["evalue"]) for c in plain.cells for e in c.errors]
    assert [d["code"] for d in plain.diagnostics] == ["GW001", "GW001"]
    pids = {int(nb.cells[-1].stream()) for nb in (forked, forked2, plain)}
    import os
    assert len(pids) == 3 and os.getpid() not in pids
