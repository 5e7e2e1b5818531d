"""``python -m gradwatch``: the rule pages in a terminal, offline (as ``ruff rule``).

    python -m gradwatch rule GW001    the page of one rule (markdown, as in docs/rules/)
    python -m gradwatch rules         the table of all rules

An unknown code is an error (exit status 2), as is a missing command. Needs no PyTorch.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gradwatch",
        description="gradwatch's rule documentation, offline. In a notebook: %load_ext gradwatch, "
                    "then %%gradwatch cells; %gradwatch rules and %gradwatch explain CODE show the same pages.")
    parser.add_argument("--version", action="version", version=f"gradwatch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    rule = commands.add_parser("rule", help="show the documentation page of one rule",
                               description="Show the documentation page of one rule (markdown).")
    rule.add_argument("code", metavar="CODE", help="a rule code, e.g. GW001")
    commands.add_parser("rules", help="list all rules", description="List all rules: code, name, severity, "
                        "what each finds.")
    return parser


def main(argv: list[str] | None = None) -> int:
    from . import docs
    from .rules import registry

    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "rule":
        try:
            text = docs.page(args.code)
        except registry.UnknownRuleCode as exc:
            parser.exit(2, f"{parser.prog} rule: error: {exc}\n")
        return _write(text)
    if args.command == "rules":
        return _write(docs.text_table() + "\nA rule's page: python -m gradwatch rule CODE\n")
    parser.print_help(sys.stderr)
    return 2


def _write(text: str) -> int:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `python -m gradwatch rules | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
