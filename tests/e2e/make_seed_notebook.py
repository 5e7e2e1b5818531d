"""Build the e2e notebook from the seed programs and execute it with the real kernel side.

Usage: python tests/e2e/make_seed_notebook.py OUT.ipynb

Cells: ``%load_ext gradwatch`` (execution count 1), then one ``%%gradwatch`` cell per
seed program (counts 2, 3, 4). Executed by nbclient on a ``python3`` kernel started from
this same interpreter, so the kernel sees the same ``gradwatch`` and torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager, NATIVE_KERNEL_NAME
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
SEEDS = [
    "program1_no_requires_grad.py",
    "program2_correct.py",
    "program3_detach.py",
]
MIME = "application/vnd.gradwatch.diagnostics+json"


class ThisInterpreterKernels(KernelSpecManager):
    """Serve the ``python3`` kernel spec from ipykernel in this interpreter, whatever
    other kernel specs the machine has installed."""

    def get_kernel_spec(self, kernel_name):
        if kernel_name == NATIVE_KERNEL_NAME:
            from ipykernel.kernelspec import get_kernel_dict, RESOURCES
            from jupyter_client.kernelspec import KernelSpec

            spec = get_kernel_dict()
            spec["argv"][0] = sys.executable
            return KernelSpec(resource_dir=RESOURCES, **spec)
        return super().get_kernel_spec(kernel_name)


def build() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    cells = [nbformat.v4.new_code_cell("%load_ext gradwatch")]
    for seed in SEEDS:
        body = (REPO / "examples" / "seed" / seed).read_text(encoding="utf-8")
        cells.append(nbformat.v4.new_code_cell("%%gradwatch\n" + body.rstrip("\n")))
    nb.cells = cells
    return nb


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    nb = build()
    client = NotebookClient(
        nb,
        kernel_name="python3",
        kernel_manager_kwargs={"kernel_spec_manager": ThisInterpreterKernels()},
        allow_errors=True,
        timeout=600,
        resources={"metadata": {"path": str(REPO)}},
    )
    client.execute()
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    problems = []
    for cell in nb.cells:
        payloads = [o for o in cell.get("outputs", []) if MIME in o.get("data", {})]
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        codes = [d["code"] for o in payloads for d in o["data"][MIME]["diagnostics"]]
        first = cell.source.splitlines()[0]
        print(
            f"[{cell.execution_count}] {first!r}: "
            f"{len(payloads)} payload(s) {codes}" + (f", error {errors[0]['ename']}" if errors else "")
        )
        # Programs 1 and 3 are meant to raise; the harness itself must not break.
        if first.startswith("%load_ext") and errors:
            problems.append(f"%load_ext gradwatch failed: {errors[0]['ename']}: {errors[0]['evalue']}")
        if first.startswith("%%gradwatch") and len(payloads) != 1:
            problems.append(f"cell [{cell.execution_count}] produced {len(payloads)} gradwatch payloads, expected 1")
    for p in problems:
        print(f"make_seed_notebook: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
