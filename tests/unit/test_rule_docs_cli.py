"""Rule pages offline (issue 13, section 6): ``python -m gradwatch rule CODE`` / ``rules`` in a
terminal, as ``ruff rule``; the same pages as docs/rules/ (the rule modules' docstrings)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from gradwatch import docs
from gradwatch.diagnostics import DOCS_BASE_URL
from gradwatch.rules import registry

REPO = pathlib.Path(__file__).resolve().parents[2]


def _gradwatch(*args: str, torch: bool = True) -> subprocess.CompletedProcess[str]:
    # without torch: `import torch` raises ImportError, so the CLI must not need it
    block = "" if torch else "sys.modules['torch'] = None; "
    code = (f"import runpy, sys; {block}sys.argv = ['gradwatch', *sys.argv[1:]]; "
            "runpy.run_module('gradwatch', run_name='__main__', alter_sys=True)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)


def test_rule_prints_the_page():
    out = subprocess.run([sys.executable, "-m", "gradwatch", "rule", "GW001"], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert out.stdout == docs.page("GW001") == (REPO / "docs" / "rules" / "GW001.md").read_text()
    assert out.stdout.startswith("# GW001 requires-grad-missing\n")


def test_rule_code_in_any_case_and_without_torch():
    out = _gradwatch("rule", "gw105", torch=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == docs.page("GW105")


@pytest.mark.parametrize("code", ["GW999", "GW0", "E501"])
def test_unknown_code_is_a_clear_error_with_exit_status_2(code):
    out = subprocess.run([sys.executable, "-m", "gradwatch", "rule", code], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.startswith(f"python -m gradwatch rule: error: unknown rule code '{code}'; known codes: GW001, ")
    assert out.stderr.count("\n") == 1


def test_rules_prints_the_table():
    out = _gradwatch("rules", torch=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["code", "name", "severity", "what", "it", "finds"]
    rows = {line.split()[0]: line.split()[1:3] for line in lines[1:] if line.startswith("GW")}
    assert rows == {r.code: [r.name, r.severity.value] for r in registry.rules()}
    assert lines[-1] == "A rule's page: python -m gradwatch rule CODE"


@pytest.mark.parametrize("args", [[], ["rule"], ["rule", "GW001", "GW002"], ["bogus"]])
def test_usage_errors_exit_2(args):
    out = _gradwatch(*args)
    assert out.returncode == 2 and out.stdout == ""
    assert "usage: python -m gradwatch" in out.stderr


def test_pages_are_the_files_in_docs_rules():
    for name, text in docs.pages().items():
        assert (REPO / "docs" / "rules" / name).read_text() == text, name


def test_page_errors_name_the_known_codes():
    with pytest.raises(registry.UnknownRuleCode, match=r"^unknown rule code 'GW9'; known codes: GW001, GW002"):
        docs.page("GW9")


def test_urls_come_from_one_place():
    from gradwatch.diagnostics import Diagnostic, Severity

    d = Diagnostic("GW002", "graph-cut", Severity.ERROR, "m", None)
    assert d.url == DOCS_BASE_URL + "GW002.md" == d.to_json()["url"]
    assert DOCS_BASE_URL.startswith("https://") and DOCS_BASE_URL.endswith("/")
