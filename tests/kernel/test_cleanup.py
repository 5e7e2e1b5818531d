"""After a ``%%gradwatch`` cell — also one that raised or was interrupted — torch is exactly as
before (patched functions, optimizer classes, hooks, torch function modes), no user tensor is
kept alive, and ``%unload_ext gradwatch`` removes every trace. Real kernel."""

from __future__ import annotations

import pytest

import harness

pytestmark = pytest.mark.kernel

SEED = harness.REPO / "examples" / "seed"
PROGRAM1 = (SEED / "program1_no_requires_grad.py").read_text()
PROGRAM2 = (SEED / "program2_correct.py").read_text()

# Runs in the kernel: a fingerprint of everything gradwatch may touch, as identities.
SNAPSHOT = """\
import sys as _sys, torch as _torch, torch.optim as _optim
from torch.optim import optimizer as _optmod
def _gw_snapshot():
    classes = [c for c in vars(_optim).values() if isinstance(c, type) and issubclass(c, _optim.Optimizer)]
    ip = get_ipython()
    return {
        "Tensor.backward": id(_torch.Tensor.__dict__["backward"]),
        "autograd.backward": id(_torch.autograd.backward),
        "autograd.grad": id(_torch.autograd.grad),
        "Tensor.__dict__": sorted((k, id(v)) for k, v in vars(_torch.Tensor).items()),
        "optimizers": sorted((c.__name__, k, id(v)) for c in classes for k, v in vars(c).items()),
        "optimizer pre hooks": len(_optmod._global_optimizer_pre_hooks),
        "optimizer post hooks": len(_optmod._global_optimizer_post_hooks),
        "modes": [id(m) for m in _torch.overrides._get_current_function_mode_stack()],
        "mode stack": _torch._C._len_torch_function_stack(),
        "grad enabled": _torch.is_grad_enabled(),
        "anomaly": _torch.is_anomaly_enabled(),
        "module hooks": [len(getattr(_torch.nn.modules.module, n)) for n in dir(_torch.nn.modules.module)
                         if n.startswith("_global_") and isinstance(getattr(_torch.nn.modules.module, n), dict)],
        "trace": (_sys.gettrace() is None, _sys.getprofile() is None),
        "events": {k: len(v) for k, v in ip.events.callbacks.items()},
        "showwarning": id(__import__("warnings").showwarning),
    }
def _gw_diff(before):
    out = {}
    for k, v in _gw_snapshot().items():
        if v == before[k]:
            continue
        if isinstance(v, list) and v and isinstance(v[0], tuple):
            out[k] = {"added": sorted(set(v) - set(before[k]))[:10], "removed": sorted(set(before[k]) - set(v))[:10]}
        else:
            out[k] = (v, before[k])
    return out
# torch patches `step` of an optimizer class on its first instance (profiling hook): do that first
for _c in [c for c in vars(_optim).values() if isinstance(c, type) and issubclass(c, _optim.Optimizer)]:
    try:
        _c([_torch.zeros(1, requires_grad=True)])
    except Exception:
        pass
_gw_before = _gw_snapshot()
"""

CHECK = "_gw_snapshot() == _gw_before"
DIFF = "_gw_diff(_gw_before)"


@pytest.fixture(scope="module")
def kernel():
    with harness.KernelSession() as session:
        cell = session.run(SNAPSHOT)
        assert cell.errors == [], cell.traceback_text()
        yield session


def _assert_untouched(kernel):
    diff = kernel.value(DIFF)
    assert diff == {}


def test_after_a_clean_cell(kernel):
    cell = kernel.run("%%gradwatch\n" + PROGRAM2)
    assert cell.errors == [] and cell.payloads[0]["diagnostics"] == []
    _assert_untouched(kernel)
    assert kernel.value(CHECK) is True


def test_after_a_cell_that_raised(kernel):
    cell = kernel.run("%%gradwatch\n" + PROGRAM1)
    assert cell.error["ename"] == "RuntimeError"
    _assert_untouched(kernel)


def test_after_keyboard_interrupt_raised_in_the_loop(kernel):
    body = PROGRAM2.replace("    optimizer.step()\n",
                            "    optimizer.step()\n    if epoch == 3:\n        raise KeyboardInterrupt\n")
    cell = kernel.run("%%gradwatch\n" + body)
    assert cell.error["ename"] == "KeyboardInterrupt"
    assert len(cell.payloads) == 1
    _assert_untouched(kernel)


def test_after_sigint_in_the_middle_of_training(kernel):
    """A real SIGINT, delivered wherever the loop is (also inside gradwatch's hooks)."""
    body = ("import os, signal\n" + PROGRAM2.replace("epochs = 10", "epochs = 400").replace(
        "    loss.backward()\n",
        "    if epoch == 150:\n        os.kill(os.getpid(), signal.SIGINT)\n    loss.backward()\n")
        .replace("    print(f'Epoch", "    0 and print(f'Epoch"))
    cell = kernel.run("%%gradwatch\n" + body)
    assert cell.error["ename"] == "KeyboardInterrupt"
    _assert_untouched(kernel)
    assert kernel.value("epoch") == 150


def test_after_a_cell_that_pushes_its_own_function_mode(kernel):
    body = """\
from torch.overrides import TorchFunctionMode
class Counting(TorchFunctionMode):
    calls = 0
    def __torch_function__(self, func, types, args=(), kwargs=None):
        Counting.calls += 1
        return func(*args, **(kwargs or {}))
w = torch.ones(2, requires_grad=True)
with Counting():
    loss = (w * 3).sum()
    loss.backward()
inner_modes = torch._C._len_torch_function_stack()
w.grad.tolist()
"""
    cell = kernel.run("%%gradwatch\nimport torch\n" + body)
    assert cell.errors == [], cell.traceback_text()
    assert cell.results[0]["data"]["text/plain"] == "[3.0, 3.0]"
    assert kernel.value("Counting.calls") > 0
    _assert_untouched(kernel)


def test_mode_left_on_by_the_user_stays_on(kernel):
    """A mode the user enters and does not leave inside the cell is theirs: it stays."""
    cell = kernel.run("%%gradwatch\nimport torch\nfrom torch.overrides import TorchFunctionMode\n"
                      "class Passthrough(TorchFunctionMode):\n"
                      "    def __torch_function__(self, func, types, args=(), kwargs=None):\n"
                      "        return func(*args, **(kwargs or {}))\n"
                      "user_mode = Passthrough()\nuser_mode.__enter__()\n"
                      "w = torch.ones(2, requires_grad=True)\n(w * 2).sum().backward()")
    assert cell.errors == [], cell.traceback_text()
    try:
        assert kernel.value("[type(m).__name__ for m in torch.overrides._get_current_function_mode_stack()]") \
            == ["Passthrough"]
        assert kernel.value("torch.overrides._get_current_function_mode_stack()[0] is user_mode") is True
    finally:
        kernel.run("user_mode.__exit__(None, None, None)")
    _assert_untouched(kernel)


def test_after_training_in_worker_threads(kernel):
    """Modes are per thread: nothing stays on any thread's stack, and four threads with their
    own optimizers give no false step-order findings."""
    body = """\
import threading, torch
def train(w):
    opt = torch.optim.SGD([w], lr=0.05)
    x = torch.linspace(-1, 1, 16)
    for _ in range(30):
        opt.zero_grad()
        ((w * x - 2 * x) ** 2).mean().backward()
        opt.step()
weights = [torch.zeros(1, requires_grad=True) for _ in range(4)]
threads = [threading.Thread(target=train, args=(w,)) for w in weights]
for t in threads: t.start()
for t in threads: t.join()
"""
    cell = kernel.run("%%gradwatch\n" + body)
    assert cell.errors == [], cell.traceback_text()
    assert cell.payloads[0]["diagnostics"] == []
    _assert_untouched(kernel)


WEAKREF_SETUP = """\
import gc, weakref
refs = {name: weakref.ref(obj) for name, obj in
        [("w", w), ("b", b), ("loss", loss), ("y_pred", y_pred), ("X", X), ("optimizer", optimizer)]}
del w, b, loss, y_pred, X, y, optimizer
gc.collect()
sorted(name for name, r in refs.items() if r() is not None)
"""


def test_no_user_tensor_kept_alive(kernel):
    cell = kernel.run("%%gradwatch\n" + PROGRAM2)
    assert cell.errors == [] and len(cell.payloads) == 1
    alive = kernel.run(WEAKREF_SETUP)
    assert alive.errors == [], alive.traceback_text()
    assert alive.results[0]["data"]["text/plain"] == "[]"


def test_no_user_tensor_kept_alive_by_a_report_with_diagnostics(kernel):
    program = PROGRAM2.replace("X = torch.tensor", "X = torch.tensor").replace(
        "loss = mse_loss(y_pred, y)", "loss = mse_loss(y_pred.detach() + 0 * b, y)")
    cell = kernel.run("%%gradwatch\n" + program)
    assert [d["code"] for d in cell.diagnostics] == ["GW002"]
    alive = kernel.run(WEAKREF_SETUP)
    assert alive.results[0]["data"]["text/plain"] == "[]"
    assert kernel.value("__import__('gradwatch').last_report().codes") == ["GW002"]


def test_a_failed_cell_keeps_no_more_alive_than_without_gradwatch(kernel):
    """After an exception IPython itself keeps the traceback (and its frames' tensors); with
    gradwatch exactly the same objects must die once the user drops them."""
    outcome = {}
    for label, prefix in (("plain", ""), ("watched", "%%gradwatch\n")):
        cell = kernel.run(prefix + PROGRAM1)
        assert cell.error["ename"] == "RuntimeError"
        alive = kernel.run(WEAKREF_SETUP)
        assert alive.errors == [], alive.traceback_text()
        outcome[label] = alive.results[0]["data"]["text/plain"]
    assert outcome["watched"] == outcome["plain"]


def test_unload_ext_removes_every_trace():
    with harness.KernelSession(load_ext=False) as kernel:
        assert kernel.run(SNAPSHOT).errors == []
        before_magics = kernel.value("sorted(get_ipython().magics_manager.magics['cell'])")
        assert "gradwatch" not in before_magics
        assert kernel.run("%load_ext gradwatch").errors == []
        assert "gradwatch" in kernel.value("sorted(get_ipython().magics_manager.magics['cell'])")
        assert kernel.run("%gradwatch on").errors == []
        watched = kernel.run("%%gradwatch\n" + PROGRAM2)
        assert len(watched.payloads) == 1
        unload = kernel.run("%unload_ext gradwatch")
        assert unload.errors == [] and unload.outputs == []
        assert kernel.value("sorted(get_ipython().magics_manager.magics['cell'])") == before_magics
        assert kernel.value("'gradwatch' in get_ipython().magics_manager.magics['line']") is False
        assert kernel.value("[k for k in get_ipython().magics_manager.registry if 'radwatch' in k]") == []
        assert kernel.value(DIFF) == {}
        # `%gradwatch on` was active: no cell is watched any more
        after = kernel.run(PROGRAM2)
        assert after.payloads == [] and after.errors == []
        gone = kernel.run("%%gradwatch\nprint('x')")
        assert "UsageError: Cell magic `%%gradwatch` not found." in gone.stream("stderr")
        # and it loads again
        assert kernel.run("%load_ext gradwatch").errors == []
        again = kernel.run("%%gradwatch\nprint('y')")
        assert again.stream() == "y\n" and len(again.payloads) == 1


STRESS_CELL = """\
%%gradwatch
import os, signal, threading, time, torch
_stop = time.monotonic() + {duration}
_timer = threading.Timer({delay}, os.kill, (os.getpid(), signal.SIGINT))
_timer.start()
w = torch.zeros(8, requires_grad=True)
opt = torch.optim.SGD([w], lr=0.01)
x = torch.randn(64, 8)
while time.monotonic() < _stop:
    opt.zero_grad()
    loss = ((x @ w - 1.0) ** 2).mean()
    loss.backward()
    opt.step()
"""


WAIT_FOR_THE_SIGNAL = """\
def _gw_wait_for_the_signal(result):
    # the signal must land while the cell executes: outside, it interrupts the kernel itself
    timer = globals().get("_timer")
    if timer is not None:
        timer.join()
get_ipython().events.register("post_run_cell", _gw_wait_for_the_signal)
_gw_stress_before = _gw_snapshot()
"""


def test_random_interrupts_during_watched_cells_never_leave_anything_installed(kernel):
    """Real SIGINTs at random moments of watched training cells: in the user's loop, in
    gradwatch's hooks, in the session's teardown, in the rules, in the report's display. After
    each, torch is exactly as before and the next watched cell runs watched."""
    import random
    import time

    assert kernel.run(WAIT_FOR_THE_SIGNAL).errors == []
    rng = random.Random(11)
    started, outcomes = time.monotonic(), []
    try:
        for _ in range(25):
            duration = rng.uniform(0.02, 0.25)
            cell = kernel.run(STRESS_CELL.format(duration=duration, delay=rng.uniform(0.3, 1.3) * duration))
            outcomes.append(cell.error["ename"] if cell.error else None)
            assert outcomes[-1] in (None, "KeyboardInterrupt"), cell.traceback_text()
            assert "could not watch" not in cell.stream("stderr")
            assert kernel.value("_gw_diff(_gw_stress_before)") == {}
            assert kernel.value("__import__('gradwatch.session').session.current() is None") is True
    finally:
        kernel.run('get_ipython().events.unregister("post_run_cell", _gw_wait_for_the_signal)')
    assert outcomes.count("KeyboardInterrupt") >= 8  # most signals landed inside the cell
    assert time.monotonic() - started < 60
