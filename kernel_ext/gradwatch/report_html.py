"""The report as HTML, for JupyterLab, Notebook 7, Colab and VS Code without the extension.

Reads like a compiler's or ruff's output: per diagnostic a severity badge and the code (linked to
its rule page), ``cell [2], line 9, col 5``, the message, the flagged source line with the span
marked (highlighted, and ``^^^`` under it), the ``help:`` line (why, what to do), the related
locations with their lines, and the fix with its applicability in plain words. Self-contained
(one ``<style>`` with ``gradwatch-`` classes, no scripts, nothing fetched) and theme-aware:
JupyterLab's ``--jp-*`` variables where they exist, colours that read on light and dark
backgrounds where they do not. Every string that comes from the user's program (messages, help,
sources, names, paths) is escaped.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING

from .diagnostics import Applicability, Diagnostic, Fix, Location, Related

if TYPE_CHECKING:
    from .report import Report

# A source line longer than this is shown as a window around the flagged span.
SOURCE_WIDTH = 160

_BACKTICKS = re.compile(r"`([^`\n]+)`")

_STYLE = """
.gradwatch-report{text-align:left;line-height:1.45;color:var(--jp-content-font-color1,inherit);
 font-family:var(--jp-content-font-family,inherit);font-size:var(--jp-content-font-size1,13px);padding:2px 0}
.gradwatch-report *{text-align:left}
.gradwatch-report .gradwatch-summary{font-weight:600;margin:0 0 6px}
.gradwatch-report .gradwatch-diagnostic{border-left:3px solid var(--gradwatch-accent);padding:2px 0 2px 10px;
 margin:0 0 10px}
.gradwatch-report .gradwatch-error{--gradwatch-accent:var(--jp-error-color1,#d32f2f)}
.gradwatch-report .gradwatch-warning{--gradwatch-accent:var(--jp-warn-color1,#e65100)}
.gradwatch-report .gradwatch-info{--gradwatch-accent:var(--jp-info-color1,#0277bd)}
.gradwatch-report .gradwatch-head{white-space:nowrap}
.gradwatch-report .gradwatch-badge{display:inline-block;padding:0 6px;border-radius:3px;font-weight:600;
 font-size:0.85em;background:var(--gradwatch-accent);color:var(--jp-ui-inverse-font-color1,#fff)}
.gradwatch-report .gradwatch-code{font-weight:600;color:var(--jp-content-link-color,#1976d2);text-decoration:none}
.gradwatch-report .gradwatch-code:hover{text-decoration:underline}
.gradwatch-report .gradwatch-head .gradwatch-where{margin-left:0.6em}
.gradwatch-report .gradwatch-name,.gradwatch-report .gradwatch-where{color:var(--jp-content-font-color2,inherit);
 opacity:0.85}
.gradwatch-report .gradwatch-message{margin:2px 0;white-space:normal}
.gradwatch-report .gradwatch-help{margin:2px 0;white-space:normal}
.gradwatch-report .gradwatch-help-label{font-weight:600;color:var(--gradwatch-accent)}
.gradwatch-report code{font-family:var(--jp-code-font-family,monospace);font-size:0.95em;padding:0 2px;
 border-radius:2px;background:rgba(127,127,127,0.16);color:inherit}
.gradwatch-report pre.gradwatch-source{font-family:var(--jp-code-font-family,monospace);
 font-size:var(--jp-code-font-size,12px);line-height:1.35;margin:3px 0;padding:3px 6px;overflow-x:auto;
 background:var(--jp-cell-editor-background,rgba(127,127,127,0.10));color:var(--jp-content-font-color1,inherit);
 border:0;border-radius:2px;white-space:pre;width:fit-content;max-width:calc(100% - 12px)}
.gradwatch-report .gradwatch-gutter{color:var(--jp-content-font-color3,inherit);opacity:0.7;user-select:none}
.gradwatch-report mark.gradwatch-span{color:inherit;padding:0;border-radius:2px;background:rgba(127,127,127,0.3);
 background:color-mix(in srgb,var(--gradwatch-accent) 28%,transparent)}
.gradwatch-report .gradwatch-caret{color:var(--gradwatch-accent);font-weight:600}
.gradwatch-report .gradwatch-related{margin:4px 0 0 14px}
.gradwatch-report .gradwatch-related mark.gradwatch-span{background:rgba(127,127,127,0.28)}
.gradwatch-report .gradwatch-related .gradwatch-caret{color:inherit;opacity:0.6}
.gradwatch-report .gradwatch-fix{margin:4px 0 0}
.gradwatch-report .gradwatch-applicability{font-weight:600}
.gradwatch-report del.gradwatch-removed{color:inherit;text-decoration:line-through;background:rgba(127,127,127,0.25);
 background:color-mix(in srgb,var(--jp-error-color1,#d32f2f) 25%,transparent)}
.gradwatch-report ins.gradwatch-inserted{color:inherit;text-decoration:none;background:rgba(127,127,127,0.25);
 background:color-mix(in srgb,var(--jp-success-color1,#388e3c) 30%,transparent)}
"""


def render(report: Report) -> str:
    """The whole report; a clean cell gets the one quiet line the text form has."""
    if not report.diagnostics:
        return f"<div class='gradwatch'>{html.escape(report.summary())}</div>"
    body = "".join(_diagnostic(d) for d in report.diagnostics)
    return (f"<div class='gradwatch-report'><style>{_STYLE}</style>"
            f"<div class='gradwatch-summary'>{html.escape(report.summary())}</div>{body}</div>")


def inline(text: str) -> str:
    """User text as HTML: escaped, Markdown-style backticks as ``<code>``."""
    return _BACKTICKS.sub(r"<code>\1</code>", html.escape(text, quote=True))


def where(location: Location) -> str:
    """``cell [2], line 9, col 5`` (or ``path.py, line 9, col 5``)."""
    return location.describe()


def _diagnostic(d: Diagnostic) -> str:
    severity = html.escape(d.severity.value)
    head = (f"<span class='gradwatch-badge'>{severity}</span> "
            f"<a class='gradwatch-code' href='{html.escape(d.url, quote=True)}' target='_blank' "
            f"rel='noopener noreferrer'>{html.escape(d.code)}</a> "
            f"<span class='gradwatch-name'>{html.escape(d.name)}</span>")
    if d.location is not None:
        head += f" <span class='gradwatch-where'>{html.escape(where(d.location))}</span>"
    parts = [f"<div class='gradwatch-head'>{head}</div>",
             f"<div class='gradwatch-message'>{inline(d.message)}</div>"]
    if d.location is not None:
        parts.append(source_block(d.location))
    if d.help:
        parts.append(f"<div class='gradwatch-help'><span class='gradwatch-help-label'>help:</span> "
                     f"{inline(d.help)}</div>")
    parts.extend(_related(r) for r in d.related)
    if d.fix is not None:
        parts.append(_fix(d.fix))
    return f"<div class='gradwatch-diagnostic gradwatch-{severity}'>{''.join(parts)}</div>"


def _related(related: Related) -> str:
    return (f"<div class='gradwatch-related'><span class='gradwatch-where'>"
            f"{html.escape(where(related.location))}</span>: {inline(related.message)}"
            f"{source_block(related.location)}</div>")


def _fix(fix: Fix) -> str:
    # the payload's applicability: a fix the payload cannot carry whole is only a suggestion there
    applicability = Applicability(fix.to_json()["applicability"])
    preview = fix_preview(fix) if applicability is not Applicability.DISPLAY_ONLY else ""
    return (f"<div class='gradwatch-fix'><span class='gradwatch-applicability'>"
            f"{applicability.words}</span>: {inline(fix.title)}{preview}</div>")


def fix_preview(fix: Fix) -> str:
    """The line as the fix leaves it, removed text struck through and new text marked, when all
    its edits are on one line (else nothing: the title says what to do)."""
    edits = sorted(fix.edits, key=lambda edit: edit.location.column)
    if not edits or len(edits) > 20:
        return ""
    first = edits[0].location
    source = first.source.rstrip("\r\n").replace("\t", " ")
    if len(source) > 4 * SOURCE_WIDTH:
        return ""
    parts: list[str] = []
    position = 0
    for edit in edits:
        where, new_text = edit.location, edit.new_text
        start, end = where.column - 1, where.end_column - 1
        if (where.line != first.line or where.end_line != first.line or where.source != first.source
                or not position <= start <= end <= len(source) or len(new_text) > SOURCE_WIDTH or "\n" in new_text):
            return ""  # on other lines, overlapping, stale or long: the title says what to do
        parts.append(html.escape(source[position:start]))
        if end > start:
            parts.append(f"<del class='gradwatch-removed'>{html.escape(source[start:end])}</del>")
        if new_text:
            parts.append(f"<ins class='gradwatch-inserted'>{html.escape(new_text)}</ins>")
        position = end
    parts.append(html.escape(source[position:]))
    gutter = f"<span class='gradwatch-gutter'>{first.line} | </span>"
    return f"<pre class='gradwatch-source gradwatch-preview'>{gutter}{''.join(parts)}</pre>"


def source_block(location: Location) -> str:
    """The location's line with its span marked: highlighted, and ``^^^`` on the line below.

    A range that goes on past its first line is marked to the end of that line; an empty range
    (an insertion point) gets one caret. Tabs become spaces, one for one, so carets line up.
    """
    source = location.source.rstrip("\r\n").replace("\t", " ")
    if not source.strip():
        return ""
    start = min(max(1, location.column), len(source) + 1) - 1
    last = len(source) if location.end_line > location.line else min(location.end_column - 1, len(source))
    end = max(start, last)
    source, start, end, cut_left, cut_right = _window(source, start, end)
    number = str(location.line)
    gutter = f"<span class='gradwatch-gutter'>{number} | </span>"
    blank = f"<span class='gradwatch-gutter'>{' ' * len(number)} | </span>"
    e = html.escape
    line = (f"{'…' if cut_left else ''}{e(source[:start])}"
            f"<mark class='gradwatch-span'>{e(source[start:end])}</mark>{e(source[end:])}{'…' if cut_right else ''}")
    carets = " " * (start + cut_left) + "^" * max(1, end - start)
    return (f"<pre class='gradwatch-source'>{gutter}{line}\n"
            f"{blank}<span class='gradwatch-caret'>{carets}</span></pre>")


def _window(source: str, start: int, end: int) -> tuple[str, int, int, bool, bool]:
    """At most about ``SOURCE_WIDTH`` characters of ``source`` around ``[start, end)``."""
    if len(source) <= SOURCE_WIDTH:
        return source, start, end, False, False
    left = max(0, min(start - 20, len(source) - SOURCE_WIDTH))
    right = min(len(source), max(left + SOURCE_WIDTH, min(end, left + 4 * SOURCE_WIDTH)))
    return source[left:right], start - left, min(end, right) - left, left > 0, right < len(source)
