"""gradwatch's cost counted in instructions (callgrind), next to the timed ratios of overhead.py.

    python benchmarks/instructions.py            # the small MLP: steady steps and a whole cell
    python benchmarks/instructions.py --steps 20 # fewer steady steps (faster)

On a shared machine a timed ratio moves by several percent from run to run (anomaly mode, whose
code never changes, read 2.9-3.6x plain within one afternoon), more than the 5 % budgets it
judges. Instructions executed do not depend on the other jobs of the machine: this script runs
the benchmark's MLP step under ``valgrind --tool=callgrind`` in fresh processes, plain and
watched, and counts only the measured region, one call of ``functools.reduce`` (a C function,
so callgrind can switch on at it; nothing else in the step calls it). Two regions:

- steady: N steps after 100 unmeasured ones (tracing and the first sampled steps are over);
- whole cell: one 300-step watched round after a warm-up round, traced iterations included,
  as ``overhead.py``'s "whole cell" ratio.

It says nothing about cache misses or memory traffic (a timed run does), and needs valgrind
(about 6 minutes on 2 cores: plain and watched side by side); without it, it says so and exits 2.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PROGRAM = """
import functools, sys
sys.path.insert(0, {kernel_ext!r}); sys.path.insert(0, {benchmarks!r})
import torch, overhead
torch.set_num_threads(1)
w = overhead.mlp("cpu")
mode, region, steps = {mode!r}, {region!r}, {steps}
if region == "steady":
    with overhead.mode_context(mode):
        for _ in range(100):
            w.step()
        functools.reduce(lambda a, _: (w.step(), a)[1], range(steps), 0)
else:
    overhead.run_round(w, mode, 20, False)
    functools.reduce(lambda a, _: (overhead.run_round(w, mode, 300, False), a)[1], range(1), 0)
"""


def count(mode: str, region: str, steps: int) -> int:
    """Instructions of the measured region of one fresh process."""
    source = _PROGRAM.format(kernel_ext=str(ROOT / "kernel_ext"), benchmarks=str(ROOT / "benchmarks"),
                             mode=mode, region=region, steps=steps)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        run = subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=functools_reduce",
                              f"--callgrind-out-file={out}", sys.executable, "-c", source],
                             capture_output=True, text=True, check=False)
    found = re.findall(r"Collected : (\d+)", run.stderr)
    if run.returncode != 0 or not found:
        raise RuntimeError(f"callgrind run failed ({mode}, {region}):\n{run.stderr[-2000:]}")
    return int(found[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="steady steps counted (default 40)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind not found: no instruction counts (apt-get install valgrind)")
        return 2
    print("small MLP (overhead.py's), instructions under callgrind, fresh processes\n")
    print(f"{'region':<28} {'plain':>14} {'gradwatch':>14} {'ratio':>8}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:  # (one process per core)
        for region, label in (("steady", f"steady, {args.steps} steps"), ("cell", "whole 300-step cell")):
            plain, watched = pool.map(count, ("plain", "gradwatch"), (region, region), (args.steps, args.steps))
            print(f"{label:<28} {plain:>14,} {watched:>14,} {watched / plain:>7.3f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
