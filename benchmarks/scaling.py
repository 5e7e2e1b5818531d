"""Costs that must not grow with the user's world: parameter tensors, namespace entries, cell
length, optimizers, model size (memory); and the traced first steps of a ResNet-sized model.

Each scenario runs plain and under ``%%gradwatch``, each time in a fresh Python process with a
real (in-process) IPython shell, so that peak RSS is the process's own and nothing one run left
behind (caches, allocator arenas) flatters the other; a scenario whose cells take under 2 s runs
three such pairs, interleaved, and is judged by each mode's median run. A run: unmeasured setup
cells (the model, the namespace), one small watched warm-up cell in both modes (gradwatch's
imports, IPython's display machinery), then the measured cell; it reports the cell's CPU time,
the CPU time of each training step (measured by the cell's own code), peak RSS, and RSS before
and after the cell.

    python benchmarks/scaling.py SCENARIO SIZE                 # one row: plain and watched, fresh processes
    python benchmarks/scaling.py SCENARIO SIZE plain|watched   # one run, prints one JSON line

``benchmarks/overhead.py`` runs the table (`scaling_section`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
_MARK = "SCALING-RESULT "


# --- the scenarios: (setup cell, measured cell) ---------------------------------------------------
def _tensors(n: int) -> tuple[str, str]:
    """``n`` parameter tensors: ``n // 2`` Linear layers side by side, 5 training steps."""
    setup = f"""
import time, torch
from torch import nn
torch.manual_seed(0)
class Wide(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(n))
    def forward(self, x):
        return torch.stack([layer(x) for layer in self.layers]).mean(0)
model = Wide({n // 2})
opt = torch.optim.SGD(model.parameters(), lr=1e-2)
x, y = torch.randn(16, 8), torch.randn(16, 8)
"""
    cell = _loop("loss = nn.functional.mse_loss(model(x), y)", 5)
    return setup, cell


def _namespace(n: int) -> tuple[str, str]:
    """``n`` names in the notebook (ints, strings, lists, small tensors, dicts), a tiny cell."""
    setup = f"""
import time, torch
from torch import nn
torch.manual_seed(0)
_kinds = (lambda i: i, lambda i: f"s{{i}}", lambda i: [i, i], lambda i: torch.zeros(2), lambda i: {{"k": i}})
for _i in range({n}):
    globals()[f"v{{_i}}"] = _kinds[_i % 5](_i)
model = nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=1e-2)
x, y = torch.randn(8, 4), torch.randn(8, 1)
"""
    return setup, _loop("loss = nn.functional.mse_loss(model(x), y)", 3)


def _cell_lines(n: int) -> tuple[str, str]:
    """A cell of ``n`` lines: plain statements, then a small training loop."""
    setup = """
import time, torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=1e-2)
x, y = torch.randn(8, 4), torch.randn(8, 1)
"""
    loop = _loop("loss = nn.functional.mse_loss(model(x), y)", 3)
    filler = "\n".join(f"z{i} = {i} * 2 + len('{i}')" for i in range(max(n - loop.count("\n") - 1, 0)))
    return setup, filler + "\n" + loop


def _optimizers(n: int) -> tuple[str, str]:
    """``n`` optimizers made in the cell, one parameter tensor each, 2 training steps."""
    setup = f"""
import time, torch
from torch import nn
torch.manual_seed(0)
params = [nn.Parameter(torch.randn(4)) for _ in range({n})]
"""
    cell = """
opts = [torch.optim.SGD([p], lr=1e-2) for p in params]
_t = []
for _ in range(2):
    _t0 = time.thread_time()
    for o in opts:
        o.zero_grad()
    loss = torch.stack(params).square().sum()
    loss.backward()
    for o in opts:
        o.step()
    _t.append(time.thread_time() - _t0)
"""
    return setup, cell


def _mlp_memory(width: int) -> tuple[str, str]:
    """12 x Linear(width, width) (width 4096: 201M parameters, 805 MB), SGD, 3 steps."""
    setup = f"""
import time, torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(*[nn.Linear({width}, {width}) for _ in range(12)])
opt = torch.optim.SGD(model.parameters(), lr=1e-4)
x = torch.randn(64, {width})
"""
    return setup, _loop("loss = model(x).square().mean()", 3)


def _resnet(side: int) -> tuple[str, str]:
    """A ResNet-18 (11.2M parameters in 62 tensors: the model the issue's "ResNet-sized" means),
    written out here (torchvision is not installed), SGD, batches of 8 images ``side`` pixels
    wide, 5 training steps."""
    setup = f"""
import time, torch
from torch import nn
torch.manual_seed(0)
class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.short = nn.Sequential() if stride == 1 and cin == cout else \
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))
class ResNet18(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        widths, blocks, cin = (64, 128, 256, 512), [], 64
        for i, w in enumerate(widths):
            blocks += [Block(cin, w, 1 if i == 0 else 2), Block(w, w, 1)]
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(512, classes)
    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))
model = ResNet18()
opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
x, y = torch.randn(8, 3, {side}, {side}), torch.randint(0, 10, (8,))
"""
    return setup, _loop("loss = nn.functional.cross_entropy(model(x), y)", 5)


def _loop(loss_line: str, steps: int) -> str:
    return f"""
_t = []
for _ in range({steps}):
    _t0 = time.thread_time()
    opt.zero_grad()
    {loss_line}
    loss.backward()
    opt.step()
    _t.append(time.thread_time() - _t0)
"""


SCENARIOS: dict[str, Callable[[int], tuple[str, str]]] = {
    "tensors": _tensors, "namespace": _namespace, "cell-lines": _cell_lines,
    "optimizers": _optimizers, "mlp-memory": _mlp_memory, "resnet": _resnet,
}


# --- one run, in this process (the child) ------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_here(scenario: str, size: int, mode: str) -> dict:
    import contextlib
    import gc
    import io
    import resource
    import time

    import torch
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    torch.set_num_threads(1)
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    out = io.StringIO()

    def run(cell: str) -> None:
        with contextlib.redirect_stdout(out):
            result = shell.run_cell(cell, store_history=True)
        if not result.success:
            raise RuntimeError(f"cell failed: {result.error_in_exec or result.error_before_exec}")

    setup, cell = SCENARIOS[scenario](size)
    run("%load_ext gradwatch")
    run(setup)
    # the same warm-up in both modes: gradwatch's imports and first-use caches are not the cell's
    # cost, nor IPython's display machinery, made when something is first shown (its report)
    warm = "_w = torch.ones(2, requires_grad=True)\n_o = torch.optim.SGD([_w], lr=0.1)\n" \
        "(_w * 2).sum().backward()\n_o.step()\ndel _w, _o\n"
    run(warm)
    run("%%gradwatch\n" + warm)
    gc.collect()
    before = _rss_mb()
    measured = ("%%gradwatch\n" if mode == "watched" else "") + cell.lstrip("\n")
    t0, w0 = time.process_time(), time.perf_counter()
    run(measured)
    cell_s, wall_s = time.process_time() - t0, time.perf_counter() - w0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    codes: list[str] = []
    if mode == "watched":
        import gradwatch

        report = gradwatch.last_report()
        codes = [d.code if d.code != "GW900" else f"GW900: {d.message}" for d in report.diagnostics] \
            if report is not None else ["<no report>"]
    steps = list(shell.user_ns.get("_t", []))
    shell.user_ns.pop("_t", None)
    gc.collect()
    return {"scenario": scenario, "size": size, "mode": mode, "cell_s": cell_s, "wall_s": wall_s,
            "steps": steps, "peak_mb": peak, "before_mb": before, "after_mb": _rss_mb(), "codes": codes}


# --- one run in a fresh process (the parent) -----------------------------------------------------------
def run_fresh(scenario: str, size: int, mode: str, timeout: float = 1800) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "kernel_ext"), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as ipython_dir:
        env["IPYTHONDIR"] = ipython_dir  # no profile, history or startup files of the user's
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), scenario, str(size), mode],
                              capture_output=True, text=True, env=env, timeout=timeout, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    raise RuntimeError(f"{scenario} {size} {mode} failed (exit {proc.returncode}):\n"
                       f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


# --- the table ----------------------------------------------------------------------------------------
@dataclass
class Row:
    """One scenario at one size: plain and watched side by side, and the verdict."""

    scenario: str
    size: int
    plain: dict  # the median run of each mode (see `measure`)
    watched: dict
    runs: int = 1  # fresh-process runs per mode

    @property
    def ratio(self) -> float:
        return self.watched["cell_s"] / max(self.plain["cell_s"], 1e-9)

    @property
    def extra_s(self) -> float:
        return self.watched["cell_s"] - self.plain["cell_s"]

    @property
    def traced_step_ratio(self) -> float | None:
        """The larger of the watched cell's first two (traced) steps' ratios to the plain cell's
        step at the same place. Both are the first steps of a fresh process: what torch itself
        pays there (a plain ResNet's first step takes 1.7x its median) is in both, and only
        gradwatch's own cost is in the ratio."""
        pairs = list(zip(self.watched["steps"][:2], self.plain["steps"][:2], strict=False))
        if not pairs:
            return None
        return max(t / max(p, 1e-9) for t, p in pairs)

    @property
    def traced_step_vs_median(self) -> float | None:
        """The slower traced step against the plain cell's median step (printed next to the
        paired ratio: torch's first-step costs counted as if they were gradwatch's)."""
        traced, plain = self.watched["steps"][:2], self.plain["steps"]
        if not traced or not plain:
            return None
        return max(traced) / max(statistics.median(plain), 1e-9)

    @property
    def peak_ratio(self) -> float:
        return self.watched["peak_mb"] / max(self.plain["peak_mb"], 1e-9)

    @property
    def retained_mb(self) -> float:
        """How much more the watched process holds after the cell than the plain one."""
        return (self.watched["after_mb"] - self.watched["before_mb"]) - \
            (self.plain["after_mb"] - self.plain["before_mb"])


# The sizes of the table (the "full" ones) and of the growth table; --quick shrinks them.
FULL_SIZES = {"tensors": (1_000, 10_000), "namespace": (1_000, 100_000), "cell-lines": (100, 5_000),
              "optimizers": (10, 1_000), "mlp-memory": (4096,), "resnet": (64,)}
QUICK_SIZES = {"tensors": (100, 1_000), "namespace": (100, 5_000), "cell-lines": (50, 500),
               "optimizers": (5, 100), "mlp-memory": (256,), "resnet": (32,)}
WANTED = {
    "tensors": "traced step <= 2x a plain step",
    "namespace": "+50 ms at most against the small namespace",
    "cell-lines": "whole cell <= 1.2x",
    "optimizers": "whole cell <= 2x",
    "mlp-memory": "peak RSS <= +10%, nothing retained",
    "resnet": "traced step <= 2x a plain step",
}
RETAINED_BUDGET_MB = 50.0


def verdict(row: Row, small: Row | None) -> str | None:
    """None when ``row`` (the large size) is within the issue's "wanted" figure, else why not."""
    if row.watched["codes"]:
        return f"watched cell reported {row.watched['codes']} on correct code"
    if row.scenario in ("tensors", "resnet"):
        traced = row.traced_step_ratio
        if traced is None:
            return "no step timings to compare"
        return None if traced <= 2.0 else f"traced step {traced:.2f}x > 2x"
    if row.scenario == "namespace":
        growth = row.extra_s - (small.extra_s if small is not None else 0.0)
        return None if growth <= 0.05 else f"+{growth * 1e3:.0f} ms > +50 ms"
    if row.scenario == "cell-lines":
        return None if row.ratio <= 1.2 else f"{row.ratio:.2f}x > 1.2x"
    if row.scenario == "optimizers":
        return None if row.ratio <= 2.0 else f"{row.ratio:.2f}x > 2x"
    if row.peak_ratio > 1.10:
        return f"peak RSS +{(row.peak_ratio - 1) * 100:.0f}% > +10%"
    if row.retained_mb > RETAINED_BUDGET_MB:
        return f"{row.retained_mb:.0f} MB retained after the cell"
    return None


# A row whose cells take less than this runs `REPEATS` pairs of fresh processes, interleaved, and
# is judged by each mode's median run: one pair of a 0.1 s cell swings by 10% with the machine,
# a traced step of the 10,000-tensor model by 40% (the 200M-parameter MLP's memory: one pair)
REPEAT_BELOW_S = 2.0
REPEATS = 3


def median_run(runs: list[dict]) -> dict:
    """The run whose cell time is the median (an odd number of runs: one of them)."""
    return sorted(runs, key=lambda run: run["cell_s"])[(len(runs) - 1) // 2]


def measure(sizes: dict[str, tuple[int, ...]] | None = None, runner=run_fresh,
            progress: Callable[[str], None] = lambda s: None) -> list[Row]:
    rows = []
    for scenario, scenario_sizes in (sizes or FULL_SIZES).items():
        for size in scenario_sizes:
            progress(f"{scenario} {size:,}")
            plain, watched = [runner(scenario, size, "plain")], [runner(scenario, size, "watched")]
            if max(plain[0]["cell_s"], watched[0]["cell_s"]) < REPEAT_BELOW_S:
                for _ in range(REPEATS - 1):
                    plain.append(runner(scenario, size, "plain"))
                    watched.append(runner(scenario, size, "watched"))
            rows.append(Row(scenario, size, median_run(plain), median_run(watched), runs=len(plain)))
    return rows


def table(rows: list[Row]) -> tuple[list[str], list[str]]:
    """(printed lines, failures). The large size of each scenario is judged; the growth table
    compares the watched/plain ratio at both sizes."""
    by_scenario: dict[str, list[Row]] = {}
    for row in rows:
        by_scenario.setdefault(row.scenario, []).append(row)
    header = (f"{'scenario':<11} {'size':>8} {'runs':>4} {'plain s':>8} {'watched s':>10} {'ratio':>7} "
              f"{'traced step (vs median)':>24} {'peak RSS MB plain/watched':>26} {'retained MB':>12}  wanted")
    lines, failures = [header, "-" * len(header)], []
    for scenario, group in by_scenario.items():
        row, small = group[-1], (group[0] if len(group) > 1 else None)
        traced = row.traced_step_ratio
        traced_text = f"{traced:.2f}x ({row.traced_step_vs_median:.2f}x)" if traced is not None else "-"
        problem = verdict(row, small)
        if problem:
            failures.append(f"{scenario} {row.size:,}: {problem}")
        lines.append(
            f"{scenario:<11} {row.size:>8,} {row.runs:>4} {row.plain['cell_s']:>8.3f} {row.watched['cell_s']:>10.3f} "
            f"{row.ratio:>6.2f}x {traced_text:>24} "
            f"{row.plain['peak_mb']:>12.0f}/{row.watched['peak_mb']:<7.0f}({(row.peak_ratio - 1) * 100:+.0f}%) "
            f"{row.retained_mb:>+11.1f}  {WANTED[scenario]}{'' if problem is None else '  MISSED: ' + problem}")
    lines += ["", f"{'growth':<11} {'small':>8} {'ratio':>7} {'large':>8} {'ratio':>7} {'added s small/large':>20}"]
    for scenario, group in by_scenario.items():
        if len(group) > 1:
            small, large = group[0], group[-1]
            lines.append(f"{scenario:<11} {small.size:>8,} {small.ratio:>6.2f}x {large.size:>8,} {large.ratio:>6.2f}x "
                         f"{small.extra_s:>9.3f}/{large.extra_s:<9.3f}")
    return lines, failures


_USAGE = f"""usage: python benchmarks/scaling.py SCENARIO SIZE [plain|watched]
  SCENARIO SIZE           one row: plain and watched, each in a fresh process, and the verdict
  SCENARIO SIZE MODE      one run in this process, printed as one JSON line (what the row runs)
scenarios: {", ".join(SCENARIOS)}; the table's sizes: {FULL_SIZES}"""

if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or sys.argv[1] not in SCENARIOS or not sys.argv[2].isdigit() \
            or (len(sys.argv) == 4 and sys.argv[3] not in ("plain", "watched")):
        print(_USAGE, file=sys.stderr)
        sys.exit(2)
    if len(sys.argv) == 3:
        rows = measure({sys.argv[1]: (int(sys.argv[2]),)})
        printed, missed = table(rows)
        print("\n".join(printed[:3]))
        sys.exit(1 if missed else 0)
    result = run_here(sys.argv[1], int(sys.argv[2]), sys.argv[3])
    print(_MARK + json.dumps(result), flush=True)
