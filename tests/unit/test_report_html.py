"""The HTML report (issue 13, section 1): what JupyterLab, Notebook 7 and Colab show."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from gradwatch.diagnostics import Applicability, Diagnostic, Edit, Fix, Location, Related, Severity
from gradwatch.report import Report
from gradwatch.report_html import SOURCE_WIDTH, fix_preview, source_block

W_LINE = "w = torch.randn(1, 1)"
BACKWARD = "    loss.backward()"


def _loc(line=9, column=5, end_column=22, source=W_LINE, cell=2, end_line=None, path=None):
    return Location(line, column, line if end_line is None else end_line, end_column, source, cell, path)


def _gw001(**kwargs) -> Diagnostic:
    values = dict(
        code="GW001", name="requires-grad-missing", severity=Severity.ERROR,
        message="`w` is created without `requires_grad=True`",
        help="No gradient can reach it, so `opt` never updates it: create it with `requires_grad=True`.",
        location=_loc(),
        related=[Related(_loc(31, 5, 20, BACKWARD), "`loss.backward()` needs its gradient here")],
        fix=Fix("Add `requires_grad=True`", Applicability.SAFE, (Edit(_loc(9, 21, 21), ", requires_grad=True"),)),
    )
    values.update(kwargs)
    return Diagnostic(**values)


class _Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside each element with a class."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._open: list[str] = []
        self.text: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._open.append(dict(attrs).get("class") or "")

    def handle_endtag(self, tag):
        self._open.pop()

    def handle_data(self, data):
        for cls in self._open:
            for name in cls.split():
                self.text.setdefault(name, []).append(data)


def _parse(markup: str) -> _Elements:
    parser = _Elements()
    parser.feed(markup)
    parser.close()
    return parser


def _texts(markup: str, cls: str) -> str:
    return "".join(_parse(markup).text.get(cls, []))


def test_a_diagnostic_reads_like_a_compilers():
    markup = Report(2, [_gw001()]).to_html()
    parsed = _parse(markup)
    assert _texts(markup, "gradwatch-summary") == "gradwatch: 1 problem(s)"
    assert _texts(markup, "gradwatch-badge") == "error"
    assert "gradwatch-error" in markup
    [link] = [attrs for tag, attrs in parsed.tags if tag == "a"]
    assert link["href"] == "https://github.com/gradwatch/gradwatch/blob/main/docs/rules/GW001.md"
    assert link["class"] == "gradwatch-code" and link["rel"] == "noopener noreferrer"
    assert _texts(markup, "gradwatch-code") == "GW001"
    assert _texts(markup, "gradwatch-head").endswith("cell [2], line 9, col 5")
    # the message with backticks as <code>
    assert ("<div class='gradwatch-message'><code>w</code> is created without <code>requires_grad=True</code>"
            "</div>") in markup
    # the help line under the flagged source line, before the related locations
    assert ("<div class='gradwatch-help'><span class='gradwatch-help-label'>help:</span> No gradient can reach it, "
            "so <code>opt</code> never updates it: create it with <code>requires_grad=True</code>.</div>") in markup
    assert markup.index("<div class='gradwatch-message'>") < markup.index("<pre class='gradwatch-source'>") \
        < markup.index("<div class='gradwatch-help'>") < markup.index("<div class='gradwatch-related'>")
    assert "<div class='gradwatch-help'>" not in Report(2, [_gw001(help=None)]).to_html()


def test_the_flagged_span_is_highlighted_and_underlined():
    block = source_block(_loc())
    assert block == ("<pre class='gradwatch-source'><span class='gradwatch-gutter'>9 | </span>"
                     "w = <mark class='gradwatch-span'>torch.randn(1, 1)</mark>\n"
                     "<span class='gradwatch-gutter'>  | </span><span class='gradwatch-caret'>"
                     "    ^^^^^^^^^^^^^^^^^</span></pre>")
    lines = _texts(block, "gradwatch-source").splitlines()
    assert lines == ["9 | w = torch.randn(1, 1)", "  |     ^^^^^^^^^^^^^^^^^"]
    # columns are characters: the carets sit under the span in the rendered text
    assert lines[1].index("^") == lines[0].index("torch") and lines[1].count("^") == len("torch.randn(1, 1)")


def test_span_edge_cases():
    # an insertion point gets one caret; indentation and tabs keep the carets aligned
    assert _texts(source_block(_loc(9, 21, 21)), "gradwatch-caret") == " " * 20 + "^"
    tabbed = _texts(source_block(_loc(3, 2, 6, "\tloss.x")), "gradwatch-source").splitlines()
    assert tabbed == ["3 |  loss.x", "  |  ^^^^"]
    # a range that goes on to later lines is marked to the end of its first line
    multi = _texts(source_block(_loc(4, 7, 2, "model(x,", end_line=6)), "gradwatch-caret")
    assert multi == "      ^^"
    # a column past the end of a stale line is clamped, never an IndexError or a negative span
    assert _texts(source_block(_loc(1, 50, 60, "x = 1")), "gradwatch-caret") == "     ^"
    assert source_block(_loc(1, 1, 1, "   ")) == ""


def test_a_long_line_shows_a_window_around_the_span():
    source = "x = f(" + "a, " * 300 + "flagged_name" + ", b" * 300 + ")"
    column = source.index("flagged_name") + 1
    text = _texts(source_block(_loc(1, column, column + len("flagged_name"), source)), "gradwatch-source")
    first, carets = text.splitlines()
    assert first.startswith("1 | …") and first.endswith("…") and len(first) < SOURCE_WIDTH + 10
    assert first[carets.index("^"):carets.index("^") + len("flagged_name")] == "flagged_name"
    assert carets.count("^") == len("flagged_name")


def test_related_locations_show_their_lines():
    markup = Report(2, [_gw001()]).to_html()
    related = _texts(markup, "gradwatch-related")
    assert related.startswith("cell [2], line 31, col 5: loss.backward() needs its gradient here")
    assert "31 |     loss.backward()\n   |     ^^^^^^^^^^^^^^^" in related


def test_fix_applicability_in_plain_words():
    def fix_text(applicability, edits=()):
        d = _gw001(fix=Fix("Use `y_pred` instead", applicability, edits))
        return _texts(Report(2, [d]).to_html(), "gradwatch-fix")

    assert fix_text(Applicability.SAFE) == "safe fix: Use y_pred instead"
    assert fix_text(Applicability.UNSAFE) == "fix that changes behaviour: Use y_pred instead"
    assert fix_text(Applicability.DISPLAY_ONLY) == "suggestion: Use y_pred instead"
    # a fix the payload cannot carry whole is advice there, and so here
    too_long = (Edit(_loc(9, 21, 21), "x" * 20000),)
    assert fix_text(Applicability.SAFE, too_long) == "suggestion: Use y_pred instead"
    assert "display-only" not in Report(2, [_gw001(fix=Fix("t", Applicability.DISPLAY_ONLY))]).to_html()


def test_the_fix_shows_the_line_it_leaves():
    d = _gw001()
    assert fix_preview(d.fix) == (
        "<pre class='gradwatch-source gradwatch-preview'><span class='gradwatch-gutter'>9 | "
        "</span>w = torch.randn(1, 1<ins class='gradwatch-inserted'>, requires_grad=True</ins>)"
        "</pre>")
    assert _texts(Report(2, [d]).to_html(), "gradwatch-fix") == (
        "safe fix: Add requires_grad=True9 | w = torch.randn(1, 1, requires_grad=True)")
    detach = "    detached_y_pred = y_pred.detach()"
    replace = Fix("Use `y_pred` instead", Applicability.UNSAFE, (Edit(_loc(29, 23, 38, detach), "y_pred"),))
    assert "= <del class='gradwatch-removed'>y_pred.detach()</del><ins class='gradwatch-inserted'>y_pred</ins></pre>" \
        in fix_preview(replace)
    two = Fix("t", Applicability.SAFE, (Edit(_loc(1, 6, 7, "f(a, b)"), "<c>"), Edit(_loc(1, 3, 4, "f(a, b)"), "")))
    assert fix_preview(two).endswith("f(<del class='gradwatch-removed'>a</del>, <del class='gradwatch-removed'>b</del>"
                                     "<ins class='gradwatch-inserted'>&lt;c&gt;</ins>)</pre>")


def test_no_fix_preview_where_one_line_cannot_show_it():
    on_two_lines = (Edit(_loc(9, 21, 21), "x"), Edit(_loc(10, 1, 1, "b = 1"), "y"))
    overlapping = (Edit(_loc(9, 5, 10), "x"), Edit(_loc(9, 8, 12), "y"))
    stale = (Edit(_loc(9, 30, 31), "x"),)  # past the end of the line it names
    multi_line = (Edit(_loc(9, 5, 22), "a\nb"),)
    for edits in ((), on_two_lines, overlapping, stale, multi_line):
        assert fix_preview(Fix("t", Applicability.SAFE, edits)) == ""
    # a suggestion has no edits to show
    advice = Fix("t", Applicability.DISPLAY_ONLY, (Edit(_loc(9, 21, 21), "x"),))
    assert "gradwatch-preview" not in Report(2, [_gw001(fix=advice)]).to_html()


def test_hostile_text_stays_inert():
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>'\"&"
    d = _gw001(
        name=hostile, message=f"`{hostile}` {hostile}", help=f"`{hostile}` {hostile}",
        location=_loc(1, 1, 8, hostile, path=hostile, cell=None),
        related=[Related(_loc(2, 1, 3, hostile, path=hostile, cell=None), hostile)],
        fix=Fix(hostile, Applicability.UNSAFE, (Edit(_loc(1, 1, 8, hostile, path=hostile, cell=None), hostile),)),
    )
    markup = Report(2, [d]).to_html()
    parsed = _parse(markup)
    assert {tag for tag, _ in parsed.tags} <= {"div", "style", "span", "a", "code", "pre", "mark", "del", "ins"}
    assert all(not name.startswith("on") for _, attrs in parsed.tags for name in attrs)
    assert "<script" not in markup and "<img" not in markup
    # whole: name, message x2, help x2, path x2, related message, fix title, the fix's new text
    # (the source lines are there too, cut by the <mark> and <del> of their spans)
    assert markup.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 10
    assert "<code>&lt;script&gt;" in markup  # backticks around escaped text


def test_self_contained_and_theme_aware():
    markup = Report(2, [_gw001()]).to_html()
    style = re.search(r"<style>(.*?)</style>", markup, re.S)
    assert style is not None and "@import" not in style.group(1) and "url(" not in style.group(1)
    # every selector is scoped to the report, every JupyterLab variable has a fallback
    selectors = re.findall(r"(?:^|})\s*([^{}]+)\{", style.group(1))
    assert selectors and all(s.strip().startswith(".gradwatch-report") for s in selectors)
    assert re.findall(r"var\(--jp-[\w-]+\)", style.group(1)) == []
    assert "var(--jp-error-color1,#d32f2f)" in style.group(1) and "text-align:left" in style.group(1)
    classes = {c for _, attrs in _parse(markup).tags for c in (attrs.get("class") or "").split()}
    assert classes and all(c.startswith("gradwatch-") for c in classes)


def test_clean_cell_is_the_quiet_line_of_the_text_form():
    assert Report(3).to_html() == "<div class='gradwatch'>gradwatch: no problems found</div>"
    hidden = Report(3, [], suppressed={"GW001": 2})
    assert hidden.to_html() == f"<div class='gradwatch'>{hidden.to_text()}</div>"


def test_no_location_and_file_locations():
    markup = Report(2, [_gw001(location=None, related=[], fix=None)]).to_html()
    assert "class='gradwatch-source'" not in markup and "class='gradwatch-where'" not in markup
    in_file = Report(2, [_gw001(location=_loc(cell=None, path="train.py"))]).to_html()
    assert "train.py, line 9, col 5" in _texts(in_file, "gradwatch-head")
    warning = Report(2, [_gw001(severity=Severity.WARNING)]).to_html()
    assert _texts(warning, "gradwatch-badge") == "warning" and "gradwatch-diagnostic gradwatch-warning" in warning
