"""The rule pages: one per rule, from its module docstring, and the rule table.

The same pages are the files in ``docs/rules/`` and what ``%gradwatch explain GW001`` (in a
notebook) and ``python -m gradwatch rule GW001`` (in a terminal) show, so they work offline
and ship with the package (they are the rule modules' docstrings). Regenerate the files with

    python -m gradwatch.docs docs/rules [--readme README.md]

With ``--readme``, the rule table in the README (after ``<!-- rules-table -->``) is rewritten too.
"""

from __future__ import annotations

import pathlib
import sys

from .rules import registry
from .rules.base import Rule


def table(link_prefix: str = "") -> str:
    rows = [f"| [{r.code}]({link_prefix}{r.code}.md) | `{r.name}` | {r.severity.value} | {r.summary} |"
            for r in registry.rules()]
    return ("| code | name | severity | what it finds |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")


def text_table() -> str:
    """The rule table as aligned plain text (terminals, a notebook's ``text/plain``)."""
    rows = [("code", "name", "severity", "what it finds")]
    rows += [(r.code, r.name, r.severity.value, r.summary) for r in registry.rules()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
                     for row in rows) + "\n"


def markdown_table() -> str:
    """The rule table in markdown, without links (``%gradwatch rules``: pages are one
    ``%gradwatch explain CODE`` away, also offline)."""
    rows = [f"| {r.code} | `{r.name}` | {r.severity.value} | {r.summary} |" for r in registry.rules()]
    return ("| code | name | severity | what it finds |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")


def _page(rule: type[Rule]) -> str:
    title = f"# {rule.code} {rule.name}\n\n"
    meta = (f"Severity: **{rule.severity.value}**. "
            f"Silence it for a cell with `%%gradwatch --ignore {rule.code}`.\n\n")
    return title + f"{rule.summary}\n\n" + meta + rule.doc().strip() + "\n"


def page(code: str) -> str:
    """The page of one rule (markdown), by its exact code in any case (``"gw001"``).

    Raises `registry.UnknownRuleCode` (a ValueError) naming the known codes otherwise.
    """
    wanted = code.strip().upper()
    rule = registry.by_code().get(wanted)
    if rule is None:
        known = ", ".join(registry.by_code())
        raise registry.UnknownRuleCode(f"unknown rule code {code.strip()!r}; known codes: {known}")
    return _page(rule)


def pages() -> dict[str, str]:
    out = {f"{rule.code}.md": _page(rule) for rule in registry.rules()}
    out["README.md"] = ("# gradwatch rules\n\nGenerated from the rules' docstrings by "
                        "`python -m gradwatch.docs docs/rules`.\n\n" + table())
    return out


def update_readme(path: pathlib.Path) -> None:
    marker = "<!-- rules-table -->"
    text = path.read_text()
    head, _, rest = text.partition(marker)
    tail = rest[rest.index("\n## "):] if "\n## " in rest else ""
    path.write_text(head + marker + "\n" + table("docs/rules/") + tail)


def main(argv: list[str]) -> int:
    if "--readme" in argv:
        i = argv.index("--readme")
        update_readme(pathlib.Path(argv[i + 1]))
        del argv[i:i + 2]
    target = pathlib.Path(argv[0] if argv else "docs/rules")
    target.mkdir(parents=True, exist_ok=True)
    for name, text in pages().items():
        (target / name).write_text(text)
    print(f"wrote {len(pages())} files to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
