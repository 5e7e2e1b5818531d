"""Run the seed's programs 1-3 in ``%%gradwatch`` cells through a real Jupyter kernel.

Prints, for each cell, the exception it raised (if any) and gradwatch's diagnostics with their
exact ranges. ``--notebook PATH`` also writes the executed notebook.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import nbformat
from nbclient import NotebookClient

from gradwatch.diagnostics import Applicability

ROOT = pathlib.Path(__file__).resolve().parent.parent
MIME = "application/vnd.gradwatch.diagnostics+json"
PROGRAMS = ["program1_no_requires_grad.py", "program2_correct.py", "program3_detach.py"]


def build() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell("%load_ext gradwatch"))
    for name in PROGRAMS:
        source = (ROOT / "examples" / "seed" / name).read_text()
        nb.cells.append(nbformat.v4.new_code_cell("%%gradwatch\n" + source.rstrip("\n")))
    return nb


def execute(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True).execute()
    return nb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notebook", type=pathlib.Path, help="write the executed notebook here")
    args = parser.parse_args()
    nb = execute(build())
    for cell, name in zip(nb.cells[1:], PROGRAMS, strict=True):
        print(f"=== In [{cell.execution_count}]: %%gradwatch + examples/seed/{name}")
        for out in cell.outputs:
            if out.output_type == "error":
                print(f"  raised {out.ename}: {out.evalue}")
        payloads = [o.data[MIME] for o in cell.outputs if o.get("data", {}).get(MIME) is not None]
        if not payloads:
            print("  (no gradwatch payload)")
        for payload in payloads:
            diagnostics = payload["diagnostics"]
            if not diagnostics:
                print("  gradwatch: no problems found")
            for d in diagnostics:
                loc = d["location"]
                where = f"cell [{loc['cell']}], line {loc['line']}, col {loc['column']}" if loc else "-"
                print(f"  {d['severity']} {d['code']} ({d['name']}) at {where}")
                if loc:
                    print(f"      {loc['source']}")
                    print(f"      {' ' * (loc['column'] - 1)}{'^' * max(1, loc['end_column'] - loc['column'])}")
                print(f"    {d['message']}")
                if d.get("help"):
                    print(f"    help: {d['help']}")
                if d["fix"]:
                    words = Applicability(d["fix"]["applicability"]).words
                    print(f"    {words}: {d['fix']['title']}")
    if args.notebook:
        args.notebook.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, args.notebook)
        print(f"wrote {args.notebook}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
