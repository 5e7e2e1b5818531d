"""Acceptance tests: the seed's three programs in ``%%gradwatch`` cells of a real kernel."""

from __future__ import annotations

import asyncio

import pytest

import harness

pytestmark = pytest.mark.kernel

SEED = harness.REPO / "examples" / "seed"
PROGRAM1 = (SEED / "program1_no_requires_grad.py").read_text()
PROGRAM2 = (SEED / "program2_correct.py").read_text()
PROGRAM3 = (SEED / "program3_detach.py").read_text()
NO_GRAD_FN = "element 0 of tensors does not require grad and does not have a grad_fn"


def _split_program1() -> tuple[str, str]:
    """Program 1 with data and w/b in a plain cell, the rest in a %%gradwatch cell."""
    lines = PROGRAM1.split("\n")
    return "\n".join(lines[:9]), "%%gradwatch\n" + "\n".join(lines[9:])


def apply_edits(text: str, edits: list[dict]) -> str:
    """Apply a fix's edits (1-based lines, character columns, end exclusive) to a cell."""
    lines = text.split("\n")
    for edit in sorted(edits, key=lambda e: (e["location"]["line"], e["location"]["column"]), reverse=True):
        loc = edit["location"]
        assert loc["line"] == loc["end_line"]
        line = lines[loc["line"] - 1]
        assert line == loc["source"]
        lines[loc["line"] - 1] = line[: loc["column"] - 1] + edit["new_text"] + line[loc["end_column"] - 1:]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def seed_runs():
    """Two notebooks, run concurrently in kernels started the ordinary way (not forked): the
    three programs (and program 1 fixed by its own quick fixes), and program 1 split over a
    plain cell and a %%gradwatch cell."""
    plain, watched = _split_program1()
    one = ["%%gradwatch\n" + PROGRAM1, "%%gradwatch\n" + PROGRAM2, "%%gradwatch\n" + PROGRAM3,
           fixed_program1()]
    two = ["x = 1", plain, "print('between')", watched]

    async def both():
        return await asyncio.gather(harness.arun_notebook(one, plain=True), harness.arun_notebook(two, plain=True))

    return asyncio.run(both())


def _loc(d: dict) -> tuple:
    loc = d["location"]
    return (loc["cell"], loc["line"], loc["column"], loc["end_line"], loc["end_column"], loc["source"])


def test_every_cell_counts_like_the_notebook(seed_runs):
    for notebook in seed_runs:
        counts = [c.execution_count for c in notebook.cells]
        assert counts == list(range(1, len(notebook.cells) + 1))
        for cell in notebook.cells:
            assert cell.reply_count == cell.execution_count
            for payload in cell.payloads:
                assert payload["cell"]["execution_count"] == cell.execution_count


def test_program1_points_at_w_and_b_creation(seed_runs):
    cell = seed_runs[0].cells[1]
    assert cell.execution_count == 2
    assert len(cell.payloads) == 1
    diags = cell.diagnostics
    assert [d["code"] for d in diags] == ["GW001", "GW001"]
    assert [_loc(d) for d in diags] == [
        (2, 9, 5, 9, 22, "w = torch.randn(1, 1)"),
        (2, 10, 5, 10, 22, "b = torch.randn(1, 1)"),
    ]
    assert [d["severity"] for d in diags] == ["error", "error"]
    assert [d["evidence"]["tensor"] for d in diags] == ["w", "b"]
    assert all(d["url"].endswith("/GW001.md") for d in diags)


def test_program1_keeps_the_original_error_with_a_note(seed_runs):
    cell = seed_runs[0].cells[1]
    assert len(cell.errors) == 1
    assert cell.error["ename"] == "RuntimeError"
    assert cell.error["evalue"] == NO_GRAD_FN
    tb = cell.traceback_text()
    assert f"RuntimeError: {NO_GRAD_FN}" in tb
    assert "gradwatch GW001: `w` is created without `requires_grad=True`" in tb
    assert "(cell [2], line 9, col 5)" in tb
    assert cell.stream("stdout") == ""  # it fails at the first backward(), before any print


def test_program1_safe_fix_inserts_requires_grad(seed_runs):
    cell = seed_runs[0].cells[1]
    fixes = [d["fix"] for d in cell.diagnostics]
    assert [f["applicability"] for f in fixes] == ["safe", "safe"]
    edits = [e for f in fixes for e in f["edits"]]
    assert [(e["location"]["line"], e["location"]["column"], e["location"]["end_column"], e["new_text"])
            for e in edits] == [(9, 21, 21, ", requires_grad=True"), (10, 21, 21, ", requires_grad=True")]
    assert apply_edits(cell.source, edits) == fixed_program1()
    assert fixed_program1() == "%%gradwatch\n" + PROGRAM2.replace(
        "# Model parameters (CORRECT - gradient tracking enabled)",
        "# Model parameters (INCORRECT - no gradient tracking)")


def fixed_program1() -> str:
    lines = ("%%gradwatch\n" + PROGRAM1).split("\n")
    for n in (8, 9):  # cell lines 9 and 10
        assert lines[n].endswith("torch.randn(1, 1)")
        lines[n] = lines[n][:20] + ", requires_grad=True" + lines[n][20:]
    return "\n".join(lines)


def test_program1_fixed_by_its_quick_fixes_is_clean(seed_runs):
    cell = seed_runs[0].cells[4]
    assert cell.errors == []
    assert len(cell.payloads) == 1 and cell.diagnostics == []
    assert cell.stream().count("Epoch: ") == 10


def test_program2_gives_an_empty_payload(seed_runs):
    cell = seed_runs[0].cells[2]
    assert cell.errors == []
    assert len(cell.payloads) == 1
    assert cell.payloads[0]["diagnostics"] == []
    assert cell.payloads[0]["cell"]["execution_count"] == 3
    out = cell.stream()
    assert out.count("Epoch: ") == 10 and "Final weights:" in out and "Final bias:" in out


def test_program3_points_at_detach(seed_runs):
    cell = seed_runs[0].cells[3]
    diags = cell.diagnostics
    assert [d["code"] for d in diags] == ["GW002"]
    assert _loc(diags[0]) == (4, 29, 23, 29, 38, "    detached_y_pred = y_pred.detach()")
    assert diags[0]["evidence"]["cut"] == "detach"
    assert sorted(diags[0]["evidence"]["cut_off"]) == ["b", "w"]
    # the cell still fails as it does without gradwatch (the loss does not require grad)
    assert cell.error["ename"] == "RuntimeError" and cell.error["evalue"] == NO_GRAD_FN
    assert "gradwatch GW002" in cell.traceback_text()


def test_earlier_cell_variant_points_into_the_earlier_cell(seed_runs):
    notebook = seed_runs[1]
    plain, between, watched = notebook.cells[2], notebook.cells[3], notebook.cells[4]
    assert (plain.execution_count, between.execution_count, watched.execution_count) == (3, 4, 5)
    assert plain.payloads == [] and between.payloads == []
    assert len(watched.payloads) == 1
    diags = watched.diagnostics
    assert [d["code"] for d in diags] == ["GW001", "GW001"]
    assert [_loc(d) for d in diags] == [
        (3, 8, 5, 8, 22, "w = torch.randn(1, 1)"),
        (3, 9, 5, 9, 22, "b = torch.randn(1, 1)"),
    ]
    edits = [e for d in diags for e in d["fix"]["edits"]]
    assert [(e["location"]["cell"], e["location"]["line"], e["location"]["column"]) for e in edits] == \
        [(3, 8, 21), (3, 9, 21)]
    assert watched.error["ename"] == "RuntimeError" and watched.error["evalue"] == NO_GRAD_FN
    assert "(cell [3], line 8, col 5)" in watched.traceback_text()


def test_an_earlier_cell_that_starts_with_blank_lines_is_located_on_the_editor_lines():
    """IPython compiles a cell without its leading blank lines; the editor (and the history)
    keeps them. Locations in that cell count the editor's lines."""
    plain, watched = _split_program1()
    notebook = harness.run_notebook(["\n\n" + plain, watched], plain=True)
    diags = notebook.cells[-1].diagnostics
    assert [_loc(d) for d in diags] == [
        (2, 10, 5, 10, 22, "w = torch.randn(1, 1)"),
        (2, 11, 5, 11, 22, "b = torch.randn(1, 1)"),
    ]
    edits = [e for d in diags for e in d["fix"]["edits"]]
    assert [(e["location"]["line"], e["location"]["source"]) for e in edits] == \
        [(10, "w = torch.randn(1, 1)"), (11, "b = torch.randn(1, 1)")]
