"""The rule registry and the conventions every rule module follows."""

import pathlib
import re

import pytest

from gradwatch import docs
from gradwatch.rules import registry

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_codes_are_unique_and_well_formed():
    codes = [r.code for r in registry.rules()]
    assert len(codes) == len(set(codes))
    assert all(re.fullmatch(r"GW\d{3}", c) for c in codes)
    assert {"GW001", "GW002", "GW010", "GW900"} <= set(codes)


@pytest.mark.parametrize("rule", registry.rules(), ids=lambda r: r.code)
def test_rule_module_has_documentation_sections(rule):
    doc = rule.doc()
    for section in ("## What it does", "## Why is this bad?", "## Example", "## Use instead"):
        assert section in doc, f"{rule.code} lacks {section}"
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule.name)
    assert rule.summary


def test_expand_prefixes_and_lists():
    assert registry.expand(["GW00"]) >= {"GW001", "GW009"}
    assert "GW010" not in registry.expand(["GW00"])
    assert registry.expand(["gw001,GW002"]) == {"GW001", "GW002"}


def test_unknown_code_is_named():
    with pytest.raises(registry.UnknownRuleCode, match="'GW999'"):
        registry.expand(["GW001,GW999"])


def test_docs_pages_are_up_to_date():
    """docs/rules/ is generated from the docstrings; regenerate with python -m gradwatch.docs."""
    target = ROOT / "docs" / "rules"
    for name, text in docs.pages().items():
        assert (target / name).read_text() == text, f"docs/rules/{name} is stale"
