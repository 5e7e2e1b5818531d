"""Generate ``docs/rules/``: one page per rule from its module docstring, and an index.

    python -m gradwatch.docs docs/rules
"""

from __future__ import annotations

import pathlib
import sys

from .rules import registry


def pages() -> dict[str, str]:
    out: dict[str, str] = {}
    rows = []
    for rule in registry.rules():
        title = f"# {rule.code} {rule.name}\n\n"
        meta = (f"Severity: **{rule.severity.value}**. "
                f"Silence it for a cell with `%%gradwatch --ignore {rule.code}`.\n\n")
        out[f"{rule.code}.md"] = title + f"{rule.summary}\n\n" + meta + rule.doc().strip() + "\n"
        rows.append(f"| [{rule.code}]({rule.code}.md) | `{rule.name}` | {rule.severity.value} | {rule.summary} |")
    out["README.md"] = ("# gradwatch rules\n\nGenerated from the rules' docstrings by "
                        "`python -m gradwatch.docs docs/rules`.\n\n"
                        "| code | name | severity | what it finds |\n|---|---|---|---|\n"
                        + "\n".join(rows) + "\n")
    return out


def main(argv: list[str]) -> int:
    target = pathlib.Path(argv[0] if argv else "docs/rules")
    target.mkdir(parents=True, exist_ok=True)
    for name, text in pages().items():
        (target / name).write_text(text)
    print(f"wrote {len(pages())} files to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
