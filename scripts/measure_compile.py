"""First epoch of a small torch.compile'd model (inductor) under %%gradwatch against plain.

Each run is a fresh process with its own empty inductor cache, so both pay the same compile;
runs alternate plain / watched. Prints the seconds of each run and the ratio of the medians
(issue 10's goal: within 1.2x). ``--train-step`` compiles the whole training step instead
(zero_grad, forward, backward and step in one compiled function, as in PyTorch's tutorial).
Usage: .venv/bin/python scripts/measure_compile.py [--runs 3] [--train-step]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

_SETUP = textwrap.dedent("""
    import torch, torch.nn as nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    compiled = torch.compile(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = [(torch.randn(128, 64), torch.randint(0, 10, (128,))) for _ in range(50)]
""")
_EPOCH = textwrap.dedent("""
    for x, y in data:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(compiled(x), y)
        loss.backward()
        opt.step()
""")
_STEP_SETUP = _SETUP + textwrap.dedent("""
    def train(x, y):
        opt.zero_grad(True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    train_step = torch.compile(train)
""")
_STEP_EPOCH = textwrap.dedent("""
    for x, y in data:
        train_step(x, y)
""")
_RUN = textwrap.dedent("""
    import sys, time
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "gradwatch")
    assert shell.run_cell(SETUP).success
    cell = ("%%gradwatch\\n" if sys.argv[1] == "watched" else "") + EPOCH
    start = time.perf_counter()
    result = shell.run_cell(cell)
    print("SECONDS", time.perf_counter() - start, result.success)
""")


def run(kind: str, train_step: bool = False) -> float:
    setup, epoch = (_STEP_SETUP, _STEP_EPOCH) if train_step else (_SETUP, _EPOCH)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
        code = f"SETUP = {setup!r}\nEPOCH = {epoch!r}\n" + _RUN
        done = subprocess.run([sys.executable, "-c", code, kind], capture_output=True, text=True, env=env,
                              timeout=1200)
    line = next((x for x in done.stdout.splitlines() if x.startswith("SECONDS")), None)
    if line is None or not line.endswith("True"):
        raise SystemExit(f"{kind} run failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return float(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--train-step", action="store_true", help="compile the whole training step")
    args = parser.parse_args()
    runs = args.runs
    times: dict[str, list[float]] = {"plain": [], "watched": []}
    for _ in range(runs):
        for kind in times:
            times[kind].append(run(kind, args.train_step))
            print(f"{kind:8} {times[kind][-1]:.2f} s", flush=True)
    plain, watched = statistics.median(times["plain"]), statistics.median(times["watched"])
    what = "compiled training step" if args.train_step else "compiled model"
    print(f"{what}, first epoch, median of {runs}: plain {plain:.2f} s, %%gradwatch {watched:.2f} s, "
          f"ratio {watched / plain:.2f}x")


if __name__ == "__main__":
    main()
