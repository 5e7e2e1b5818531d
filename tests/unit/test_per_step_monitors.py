"""`watch(per_step_monitors=False)` leaves out the training-dynamics monitor (GW101-GW115), and
the benchmark's ``session-only`` mode (``--breakdown``) measures the session through it."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch
from torch import nn

import gradwatch

ROOT = Path(__file__).resolve().parents[2]
ORIGINAL_TRAIN = nn.Module.train


def _nan_loop() -> None:
    w = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        (w * float("nan")).sum().backward()
        opt.step()


def _watched(**options) -> tuple[list[str], bool]:
    """The codes reported, and whether `Module.train` was patched while the session ran."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gradwatch.watch(warn=False, namespace={}, **options) as report:
            patched = nn.Module.train is not ORIGINAL_TRAIN
            _nan_loop()
    return report.codes, patched


def test_the_training_dynamics_monitor_runs_by_default():
    assert _watched() == (["GW105"], True)


def test_per_step_monitors_off_leaves_out_the_dynamics_rules_and_their_patches():
    assert _watched(per_step_monitors=False) == ([], False)
    assert nn.Module.train is ORIGINAL_TRAIN


def test_the_benchmarks_session_only_mode_runs_without_per_step_monitors():
    spec = importlib.util.spec_from_file_location("overhead", ROOT / "benchmarks" / "overhead.py")
    assert spec is not None and spec.loader is not None
    overhead = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(overhead)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with overhead.mode_context("session-only") as report:
            patched = nn.Module.train is not ORIGINAL_TRAIN
            _nan_loop()
    assert (report.codes, patched) == ([], False)
