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


# --- precedence: declared, resolved among the selected rules only ---------------------------------
from gradwatch.diagnostics import Location  # noqa: E402
from gradwatch.events import BackwardEvent, Cut, Events, Flow, StepCounts, StepEvent, TensorFact  # noqa: E402


def _detach_loop_events() -> Events:
    """What a loop whose prediction is `.detach()`ed records: a traced backward with a cut in
    front of `w` and `b`, and steps that find no gradient on either."""
    def loc(line: int, text: str) -> Location:
        return Location(cell=3, path=None, line=line, column=5, end_line=line, end_column=5 + len(text),
                        source=" " * 4 + text)

    facts = [TensorFact(name=n, kind="tensor", requires_grad=True, is_leaf=True, owners=["opt"],
                        owner_locations=[loc(4, "opt = torch.optim.SGD([w, b])")]) for n in ("w", "b")]
    flow = Flow(loss_name="loss", unreached=facts,
                cuts=[Cut(kind="detach", op="detach", location=loc(7, "pred.detach()"), cut_off=["w", "b"],
                          input_text="pred")])
    events = Events()
    events.backwards.append(BackwardEvent(index=1, location=loc(9, "loss.backward()"), flow=flow))
    events.steps += [StepEvent(optimizer=1, name="opt", location=loc(10, "opt.step()"), backwards_since_step=1,
                               without_grad=facts, n_params=2) for _ in range(3)]
    events.n_backward = events.n_steps = 3
    events.step_counts[1] = StepCounts(steps=3, checked=3, missing=3)
    return events


def test_the_cut_supersedes_missing_gradients_by_default():
    codes = [d.code for d in registry.run(_detach_loop_events())]
    assert codes == ["GW002"]


@pytest.mark.parametrize("options", [dict(select={"GW006"}), dict(ignore={"GW002"})])
def test_a_rule_reports_what_only_unselected_rules_explain(options):
    diagnostics = registry.run(_detach_loop_events(), **options)
    assert [d.code for d in diagnostics] == ["GW006"]
    assert diagnostics[0].evidence["parameters"] == ["w", "b"]


def test_gw006_says_how_many_of_the_sampled_steps_missed_gradients():
    events = _detach_loop_events()
    events.step_counts[1] = StepCounts(steps=40, checked=18, missing=17)
    (gw006,) = registry.run(events, select={"GW006"})
    assert gw006.message.endswith("(in 17 of the 18 steps checked, out of 40)")
    assert (gw006.evidence["steps"], gw006.evidence["steps_checked"], gw006.evidence["steps_without_gradient"]) \
        == (40, 18, 17)


def test_rules_run_after_the_rules_they_defer_to():
    order = [r.code for r in registry.precedence_order(registry.by_code())]
    assert sorted(order) == sorted(registry.by_code())
    for position, code in enumerate(order):
        for first in registry.by_code()[code].defers_to:
            assert order.index(first) < position, f"{code} runs before {first}"
    assert order.index("GW006") > order.index("GW114")  # not numeric order: GW006 is the last resort


def test_deference_cycles_are_refused(monkeypatch):
    table = registry.by_code()
    monkeypatch.setattr(table["GW001"], "defers_to", frozenset({"GW002"}))
    monkeypatch.setattr(table["GW002"], "defers_to", frozenset({"GW001"}))
    with pytest.raises(ValueError, match="cycle"):
        registry.precedence_order({"GW001", "GW002"})


# --- thresholds: a rule module owns them, and its page states them -------------------------------
def _stated(number: float) -> str:
    """How a page writes a threshold: `100`, `4`, `1e-5`."""
    if float(number).is_integer():
        return str(int(number))
    mantissa, exponent = f"{number:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


@pytest.mark.parametrize("rule", registry.rules(), ids=lambda r: r.code)
def test_a_rule_page_states_its_modules_thresholds(rule):
    """Every public numeric constant of a rule module (its thresholds) is on its page in bold,
    in "What it does", and every bold number there is one of them: the page cannot drift."""
    import sys

    module = sys.modules[rule.__module__]
    constants = {name: value for name, value in vars(module).items()
                 if re.fullmatch(r"[A-Z][A-Z0-9_]*", name) and isinstance(value, (int, float))
                 and not isinstance(value, bool)}
    what = rule.doc().split("## What it does", 1)[1].split("\n## ", 1)[0]
    bold = set(re.findall(r"\*\*([0-9.e-]+)\*\*", what))
    assert bold == {_stated(v) for v in constants.values()}, (rule.code, constants, bold)


def test_thresholds_are_stated_as_the_code_uses_them():
    from gradwatch.rules import gw106_exploding_gradient as gw106
    from gradwatch.rules import gw112_flat_loss as gw112

    assert _stated(gw106.MIN_GROWTH) == "100" and "**100**" in gw106.ExplodingGradient.doc()
    assert "thousandfold" not in gw106.ExplodingGradient.doc()
    assert _stated(gw112.MAX_SPREAD) == "1e-5"
