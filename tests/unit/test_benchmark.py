"""`benchmarks/overhead.py` still runs, and its training loops are correct code (so gradwatch
reports nothing on them). No timing is asserted: speed is the benchmark's business."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest

import gradwatch

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("overhead", ROOT / "benchmarks" / "overhead.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # the benchmark smoke tests (about 20 s of CPU together) run only in the full run
def test_benchmark_workloads_are_clean_training_loops():
    overhead = load_benchmark()
    for workload in (overhead.mlp("cpu"), overhead.cnn("cpu", batch=4, channels=4)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with gradwatch.watch(warn=False, namespace={}) as report:
                for _ in range(40):
                    workload.step()
        assert report.codes == [], workload.name


@pytest.mark.slow
def test_benchmark_measures_every_mode_and_gradwatch_state():
    overhead = load_benchmark()
    res = overhead.measure(overhead.mlp("cpu"), steps=30, rounds=2, cuda=False)
    assert set(res) == {"plain", "gradwatch", "anomaly"}
    assert all(set(r) == {"median", "ratio", "paired", "cell", "session", "noise", "peak_mb"} for r in res.values())
    assert all(r["noise"] >= 0 for r in res.values())
    assert all(r["median"] > 0 and r["ratio"] > 0 and r["peak_mb"] >= 0 for r in res.values())
    assert res["plain"]["session"] == 1.0  # (each round's whole time over the plain round's, edges included)
    edges: list[float] = []
    times = overhead.run_round(overhead.mlp("cpu"), "gradwatch", 5, False, edges)
    assert len(times) == 5 and len(edges) == 1  # (the session's start and end, timed apart from its steps)
    memory = overhead.memory_benchmark(200, 100)
    assert sorted(memory["sizes"]) == [10, 100] and memory["findings"] == []
    assert 0 < max(memory["sizes"].values()) < 2**20  # 200 parameter tensors: well under 1 MB


def test_machine_noise_is_plain_against_plain_a_round_apart():
    noise = load_benchmark().machine_noise
    assert noise([1.0, 1.0, 1.0]) == 0.0
    # consecutive ratios 1.02, 0.9 (|..-1|: 0.02, 0.10), 1.1/0.918 = 1.198: the middle one is 0.10
    assert noise([1.0, 1.02, 0.918, 1.1]) == pytest.approx(0.10)
    assert noise([0.5]) == 0.0  # one round: nothing to compare


def load_scaling():
    spec = importlib.util.spec_from_file_location("scaling", ROOT / "benchmarks" / "scaling.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["scaling"] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # two fresh processes (torch + IPython imports)
def test_scaling_runs_a_scenario_plain_and_watched_in_fresh_processes():
    scaling = load_scaling()
    plain = scaling.run_fresh("tensors", 20, "plain")
    watched = scaling.run_fresh("tensors", 20, "watched")
    for run in (plain, watched):
        assert len(run["steps"]) == 5 and all(t > 0 for t in run["steps"])
        assert run["cell_s"] > 0 and run["peak_mb"] >= run["before_mb"] > 50  # torch alone is more
    assert plain["codes"] == [] and watched["codes"] == []  # a correct loop: nothing to report
    row = scaling.Row("tensors", 20, plain, watched)
    lines, _ = scaling.table([row])
    assert lines[2].startswith("tensors") and "20" in lines[2]


def _run(cell_s: float, steps=(0.1, 0.1, 0.1), peak: float = 1000.0, before: float = 900.0,
         after: float = 900.0, codes=()) -> dict:
    return {"cell_s": cell_s, "steps": list(steps), "peak_mb": peak, "before_mb": before, "after_mb": after,
            "codes": list(codes)}


def test_scaling_verdicts_follow_the_issues_wanted_figures():
    scaling = load_scaling()
    row = scaling.Row
    # a traced step at most 2x a plain step
    assert scaling.verdict(row("tensors", 10_000, _run(1.0), _run(1.2, steps=(0.19, 0.15, 0.1))), None) is None
    assert "traced step 2.50x" in scaling.verdict(row("tensors", 10_000, _run(1.0), _run(1.2, steps=(0.25, 0.1))), None)
    assert scaling.verdict(row("resnet", 64, _run(1.0), _run(1.2, steps=(0.19, 0.15, 0.1))), None) is None
    assert "traced step 2.20x" in scaling.verdict(row("resnet", 64, _run(1.0), _run(1.2, steps=(0.1, 0.22))), None)
    # ... each traced step against the plain step at the same place: a fresh process's first step
    # is slower in both modes, and that is torch's cost, not gradwatch's
    first_slow = row("resnet", 64, _run(1.0, steps=(0.2, 0.1, 0.1, 0.1)), _run(1.2, steps=(0.3, 0.15, 0.1)))
    assert first_slow.traced_step_ratio == pytest.approx(1.5) and first_slow.traced_step_vs_median == pytest.approx(3.0)
    assert scaling.verdict(first_slow, None) is None
    # fewer timed steps in one mode: the steps both have are compared; none, no verdict of met
    assert row("resnet", 64, _run(1.0, steps=(0.2,)), _run(1.2, steps=(0.3, 0.9))).traced_step_ratio == \
        pytest.approx(1.5)
    assert scaling.verdict(row("resnet", 64, _run(1.0, steps=()), _run(1.2)), None) == "no step timings to compare"
    assert "traced step 2.10x" in scaling.verdict(
        row("resnet", 64, _run(1.0, steps=(0.2, 0.1, 0.1)), _run(1.2, steps=(0.3, 0.21))), None)
    # the namespace: +50 ms at most against the small namespace's added cost
    small = row("namespace", 1_000, _run(0.010), _run(0.030))
    assert scaling.verdict(row("namespace", 100_000, _run(0.010), _run(0.070)), small) is None
    assert scaling.verdict(row("namespace", 100_000, _run(0.010), _run(0.090)), small) == "+60 ms > +50 ms"
    # whole-cell ratios
    assert scaling.verdict(row("cell-lines", 5_000, _run(1.0), _run(1.19)), None) is None
    assert scaling.verdict(row("cell-lines", 5_000, _run(1.0), _run(1.3)), None) == "1.30x > 1.2x"
    assert scaling.verdict(row("optimizers", 1_000, _run(1.0), _run(2.5)), None) == "2.50x > 2x"
    # memory: peak RSS at most +10%, nothing retained after the cell
    assert scaling.verdict(row("mlp-memory", 4096, _run(1.0), _run(1.0, peak=1090.0)), None) is None
    assert scaling.verdict(row("mlp-memory", 4096, _run(1.0), _run(1.0, peak=1200.0)), None) == "peak RSS +20% > +10%"
    assert "retained" in scaling.verdict(row("mlp-memory", 4096, _run(1.0), _run(1.0, after=1000.0)), None)
    # a diagnostic on the scenarios' correct code is a failure whatever the timing
    assert "GW105" in scaling.verdict(row("cell-lines", 5_000, _run(1.0), _run(1.0, codes=["GW105"])), None)
    lines, failures = scaling.table([small, row("namespace", 100_000, _run(0.010), _run(0.090))])
    assert failures == ["namespace 100,000: +60 ms > +50 ms"]
    assert any(line.startswith("namespace") and "3.00x" in line and "9.00x" in line for line in lines)


def test_a_quick_row_is_judged_by_the_median_of_interleaved_fresh_runs():
    scaling = load_scaling()
    calls: list[tuple[str, int, str]] = []
    times = {("optimizers", "plain"): [0.05, 0.04, 0.06], ("optimizers", "watched"): [0.13, 0.09, 0.10],
             ("resnet", "plain"): [3.0], ("resnet", "watched"): [3.75]}  # (over REPEAT_BELOW_S)

    def runner(scenario: str, size: int, mode: str) -> dict:
        calls.append((scenario, size, mode))
        return _run(times[scenario, mode][sum(c[0] == scenario and c[2] == mode for c in calls) - 1])

    rows = scaling.measure({"optimizers": (1_000,), "resnet": (64,)}, runner=runner)
    # quick cells: three pairs, plain and watched in turn; the slow row: one pair
    assert [c[2] for c in calls if c[0] == "optimizers"] == ["plain", "watched"] * 3
    assert [c[2] for c in calls if c[0] == "resnet"] == ["plain", "watched"]
    quick, slow = rows
    assert (quick.runs, quick.plain["cell_s"], quick.watched["cell_s"]) == (3, 0.05, 0.10)
    assert quick.ratio == pytest.approx(2.0) and scaling.verdict(quick, None) is None
    assert (slow.runs, slow.ratio) == (1, 1.25)
    lines, _ = scaling.table(rows)
    assert lines[2].split()[:3] == ["optimizers", "1,000", "3"]
