"""What --select/--ignore hid, in the report's text and HTML (issue 13, section 2)."""

from __future__ import annotations

from gradwatch.diagnostics import Diagnostic, Severity
from gradwatch.report import Report


def _diag(code: str = "GW006") -> Diagnostic:
    return Diagnostic(code, "parameter-without-gradient", Severity.WARNING, "no gradient reached `w`", None)


def test_no_problems_with_hidden_findings():
    report = Report(2, [], suppressed={"GW001": 2})
    assert report.to_text() == report.summary() == "gradwatch: no problems found (2 ignored: GW001)"
    assert report.to_html() == "<div class='gradwatch'>gradwatch: no problems found (2 ignored: GW001)</div>"
    assert "suppressed" not in report.to_payload()  # the payload's shape is unchanged


def test_problems_beside_hidden_findings():
    report = Report(2, [_diag()], suppressed={"GW104": 1, "GW001": 2})
    assert report.to_text().splitlines()[0] == "gradwatch: 1 problem(s) (3 ignored: GW001, GW104)"
    assert "<div class='gradwatch-summary'>gradwatch: 1 problem(s) (3 ignored: GW001, GW104)</div>" in report.to_html()


def test_nothing_hidden():
    assert Report(2, []).to_text() == "gradwatch: no problems found"
    assert Report(2, [_diag()]).to_text().splitlines()[0] == "gradwatch: 1 problem(s)"
    assert "ignored" not in Report(2, [_diag()]).to_html()


def test_count_suppressed_without_a_filter_runs_nothing():
    report = Report(2, [])
    report.count_suppressed(object())  # no events needed: no --select/--ignore, nothing to count
    assert report.suppressed == {}


def test_count_suppressed_counts_what_the_filter_hid_and_keeps_precedence():
    from test_rules_registry import _detach_loop_events

    from gradwatch.rules import registry

    events = _detach_loop_events()
    shown = registry.run(events, select={"GW006"})  # GW006 reports what the unselected GW002 explains
    report = Report(3, shown)
    report.count_suppressed(events, select={"GW006"})
    assert report.codes == ["GW006"] and report.suppressed == {"GW002": 1}
    assert report.to_text().splitlines()[0] == "gradwatch: 1 problem(s) (1 ignored: GW002)"
    by_default = Report(3, registry.run(events))
    by_default.count_suppressed(events)
    assert by_default.codes == ["GW002"] and by_default.suppressed == {}
    ignored = Report(3, registry.run(events, ignore={"GW002", "GW006"}))
    ignored.count_suppressed(events, ignore={"GW002", "GW006"})
    assert ignored.codes == [] and ignored.to_text() == "gradwatch: no problems found (1 ignored: GW002)"
