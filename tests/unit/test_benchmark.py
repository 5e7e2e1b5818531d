"""`benchmarks/overhead.py` still runs, and its training loops are correct code (so gradwatch
reports nothing on them). No timing is asserted: speed is the benchmark's business."""

from __future__ import annotations

import importlib.util
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
    assert all(set(r) == {"median", "ratio", "paired", "cell", "peak_mb"} for r in res.values())
    assert all(r["median"] > 0 and r["ratio"] > 0 and r["peak_mb"] >= 0 for r in res.values())
    memory = overhead.memory_benchmark(200, 100)
    assert sorted(memory["sizes"]) == [10, 100] and memory["findings"] == []
    assert 0 < max(memory["sizes"].values()) < 2**20  # 200 parameter tensors: well under 1 MB
