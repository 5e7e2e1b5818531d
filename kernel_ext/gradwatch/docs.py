"""Generate ``docs/rules/``: one page per rule from its module docstring, and an index.

    python -m gradwatch.docs docs/rules [--readme README.md]

With ``--readme``, the rule table in the README (after ``<!-- rules-table -->``) is rewritten too.
"""

from __future__ import annotations

import pathlib
import sys

from .rules import registry


def table(link_prefix: str = "") -> str:
    rows = [f"| [{r.code}]({link_prefix}{r.code}.md) | `{r.name}` | {r.severity.value} | {r.summary} |"
            for r in registry.rules()]
    return ("| code | name | severity | what it finds |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")


def pages() -> dict[str, str]:
    out: dict[str, str] = {}
    for rule in registry.rules():
        title = f"# {rule.code} {rule.name}\n\n"
        meta = (f"Severity: **{rule.severity.value}**. "
                f"Silence it for a cell with `%%gradwatch --ignore {rule.code}`.\n\n")
        out[f"{rule.code}.md"] = title + f"{rule.summary}\n\n" + meta + rule.doc().strip() + "\n"
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
