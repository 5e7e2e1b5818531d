"""Everything gradwatch installs comes off again: on every thread, under interrupts, and
without undoing what someone else installed on top. In-process, real torch."""

from __future__ import annotations

import sys
import threading

import pytest
import torch
from torch import nn
from torch.optim import optimizer as optimizer_module

import gradwatch
from watching import watched
from gradwatch import session as session_module


def torch_state() -> dict:
    """Identities of everything a session patches or registers, and this thread's mode stack."""
    from torch.amp import GradScaler
    return {
        "Tensor.backward": torch.Tensor.__dict__["backward"],
        "autograd.backward": torch.autograd.backward,
        "autograd.grad": torch.autograd.grad,
        "Optimizer.__init__": torch.optim.Optimizer.__dict__["__init__"],
        "Optimizer.zero_grad": torch.optim.Optimizer.__dict__["zero_grad"],
        "Module.train": nn.Module.__dict__["train"],
        "GradScaler.scale": GradScaler.__dict__["scale"],
        "GradScaler.step": GradScaler.__dict__["step"],
        "pre hooks": dict(optimizer_module._global_optimizer_pre_hooks),
        "post hooks": dict(optimizer_module._global_optimizer_post_hooks),
        "modes": torch._C._len_torch_function_stack(),
    }


@pytest.fixture
def untouched():
    before = torch_state()
    yield before
    assert torch_state() == before
    assert session_module.current() is None


def train(w: torch.Tensor, steps: int = 30) -> float:
    opt = torch.optim.SGD([w], lr=0.05)
    x = torch.linspace(-1, 1, 16)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((w * x - 2 * x) ** 2).mean()
        loss.backward()
        opt.step()
    return float(w.detach())


def in_threads(*targets) -> None:
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# --- threads ----------------------------------------------------------------------------------
def test_training_in_a_worker_thread_leaves_no_mode_on_any_stack(untouched):
    w = torch.zeros(1, requires_grad=True)
    modes_in_worker = []

    def worker():
        train(w)
        modes_in_worker.append(torch._C._len_torch_function_stack())

    watched(lambda: in_threads(worker))
    assert modes_in_worker == [0]  # gradwatch's tracing mode stays on the thread it was pushed on
    assert torch._C._len_torch_function_stack() == 0


def test_concurrent_training_threads_give_no_false_order_errors(untouched):
    plain = [torch.zeros(1, requires_grad=True) for _ in range(4)]
    in_threads(*[lambda w=w: train(w) for w in plain])
    for _ in range(3):  # the false reports depended on the threads' interleaving
        tensors = [torch.zeros(1, requires_grad=True) for _ in range(4)]
        workers = [lambda w=w: train(w) for w in tensors]
        report = watched(lambda workers=workers: in_threads(*workers))
        assert report.codes == []
        assert [t.item() for t in tensors] == [t.item() for t in plain]


def test_the_owner_thread_is_still_watched_while_a_worker_trains(untouched):
    w_worker = torch.zeros(1, requires_grad=True)
    w, b = torch.ones(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    x = torch.linspace(-1, 1, 16)

    def cell():
        worker = threading.Thread(target=train, args=(w_worker,))
        worker.start()
        opt = torch.optim.SGD([w, b], lr=0.1)
        for _ in range(5):
            opt.zero_grad()
            loss = ((w * x + b).detach() + 0 * b - 2 * x).pow(2).mean()  # w gets no gradient
            loss.backward()
            opt.step()
        worker.join()

    assert watched(cell).codes == ["GW002"]


def test_a_session_in_a_second_thread_is_refused_while_one_is_active(untouched):
    entered, release = threading.Event(), threading.Event()
    outcome: list[object] = []

    def other():
        entered.wait()
        try:
            with gradwatch.watch(warn=False, namespace={}):
                outcome.append("entered")
        except session_module.WatchError as exc:
            outcome.append(str(exc))
        finally:
            release.set()

    thread = threading.Thread(target=other)
    thread.start()
    with gradwatch.watch(warn=False, namespace={}):
        entered.set()
        release.wait()
    thread.join()
    assert len(outcome) == 1 and "another thread" in str(outcome[0])
    watched(lambda: train(torch.zeros(1, requires_grad=True)))  # and the next session works


def test_overlapping_sessions_in_two_threads_leave_nothing_patched(untouched):
    """A enters, B enters, A exits, B exits: B is refused, and nothing stays patched."""
    steps = [threading.Event() for _ in range(3)]
    errors: list[BaseException] = []

    def session_b():
        steps[0].wait()
        try:
            with gradwatch.watch(warn=False, namespace={}):
                steps[1].set()
                steps[2].wait()
        except session_module.WatchError as exc:
            errors.append(exc)
            steps[1].set()
            steps[2].wait()

    thread = threading.Thread(target=session_b)
    thread.start()
    session_a = gradwatch.watch(warn=False, namespace={})
    session_a.__enter__()
    steps[0].set()
    steps[1].wait()
    session_a.__exit__(None, None, None)
    steps[2].set()
    thread.join()
    assert len(errors) == 1


# --- interrupts -------------------------------------------------------------------------------
class InterruptAt:
    """A trace function that raises KeyboardInterrupt at the ``at``-th function call or return
    it sees inside ``Watch.__exit__`` (``at=None``: counts them). (A Ctrl-C that lands on the
    entry of ``__exit__`` itself is deferred by the installer's SIGINT handler: tested below.)"""

    def __init__(self, at: int | None) -> None:
        self.at, self.seen, self.raised = at, 0, False

    def __call__(self, frame, event, arg):
        if event in ("call", "return") and frame.f_code is not session_module.Watch.__exit__.__code__:
            self.seen += 1
            if self.seen == self.at:
                self.raised = True
                raise KeyboardInterrupt
        return self


def exit_under(tracer: InterruptAt) -> BaseException | None:
    """Enter a session, train a little, and leave it with ``tracer`` set."""
    w = torch.zeros(1, requires_grad=True)
    session = gradwatch.watch(warn=False, namespace={})
    session.__enter__()
    train(w, steps=3)
    sys.settrace(tracer)
    try:
        session.__exit__(None, None, None)
    except KeyboardInterrupt as exc:
        return exc
    finally:
        sys.settrace(None)
    return None


def teardown_events() -> int:
    """How many calls and returns leaving a session makes before the rules run."""
    counter = InterruptAt(None)
    finished = []
    original = session_module.Watch._finish_monitors

    def finish(self):
        finished.append(counter.seen)
        return original(self)
    session_module.Watch._finish_monitors = finish
    try:
        exit_under(counter)
    finally:
        session_module.Watch._finish_monitors = original
    return finished[0]


def test_an_interrupt_anywhere_in_the_teardown_leaves_nothing_installed(untouched):
    """Deterministic stand-in for a Ctrl-C that lands while the session unwinds: a
    KeyboardInterrupt raised at every call and return of the teardown in turn."""
    events = teardown_events()
    assert events > 10
    for at in list(range(1, events + 1)) + [events + 20, events + 200]:
        tracer = InterruptAt(at)
        interrupt = exit_under(tracer)
        assert tracer.raised and isinstance(interrupt, KeyboardInterrupt), at  # never swallowed
        assert torch_state() == untouched, at
        assert session_module.current() is None, at
    report = watched(lambda: train(torch.zeros(1, requires_grad=True)))  # the next session works
    assert report.codes == []


def test_a_sigint_during_the_teardown_is_raised_after_it(untouched):
    import os
    import signal

    w = torch.zeros(1, requires_grad=True)
    original = session_module.Watch._stop_tracing

    def stop_tracing(self):  # the signal arrives in the middle of the teardown
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # (handled at the next bytecode boundary)
            pass
        return original(self)
    session_module.Watch._stop_tracing = stop_tracing
    try:
        with pytest.raises(KeyboardInterrupt):
            with gradwatch.watch(warn=False, namespace={}):
                train(w, steps=3)
    finally:
        session_module.Watch._stop_tracing = original
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_sigint_on_the_entry_of_exit_is_deferred_to_the_end_of_the_teardown(untouched):
    import signal

    caught = []
    session = gradwatch.watch(warn=False, namespace={})
    session.__enter__()
    handler = signal.getsignal(signal.SIGINT)
    assert handler is not signal.default_int_handler
    frame = sys._getframe()
    try:
        with pytest.raises(KeyboardInterrupt):  # not in the session's exit: at once, as without it
            handler(signal.SIGINT, frame)
        exit_frame = type("Frame", (), {"f_code": session_module.Watch.__exit__.__code__})()
        handler(signal.SIGINT, exit_frame)  # deferred: nothing raised here ...
    finally:
        try:
            session.__exit__(None, None, None)
        except KeyboardInterrupt as exc:  # ... but after the teardown
            caught.append(exc)
    assert len(caught) == 1


# --- wrappers that escape the session -----------------------------------------------------------
def test_a_wrapper_taken_during_the_session_passes_through_and_holds_nothing_after_it(untouched):
    import gc
    import weakref

    taken = {}
    w = torch.ones(2, requires_grad=True)

    def cell():
        from torch.autograd import grad
        taken["grad"], taken["backward"] = grad, torch.Tensor.backward
        (w * 3).sum().backward()

    session = gradwatch.watch(warn=False, namespace={})
    with session:
        cell()
    assert taken["grad"] is not torch.autograd.grad  # the user's names hold gradwatch's wrappers
    alive = weakref.ref(session)
    del session
    gc.collect()
    assert alive() is None  # ... which keep no session alive
    x = torch.ones(2, requires_grad=True)
    assert taken["grad"]((x * x).sum(), x)[0].tolist() == [2.0, 2.0]  # and pass straight through
    taken["backward"]((w * 2).sum())
    assert w.grad.tolist() == [5.0, 5.0]
    report = watched(lambda: taken["backward"]((w * 2).sum()))  # no finished session's code runs
    assert report.codes == [] and w.grad.tolist() == [7.0, 7.0]


def test_a_patch_made_on_top_of_ours_during_the_session_stays(untouched):
    calls = []
    during = {}

    def cell():
        patched = torch.Tensor.backward

        def counting_backward(self, *args, **kwargs):
            calls.append(1)
            return patched(self, *args, **kwargs)
        torch.Tensor.backward = counting_backward
        during["patch"] = counting_backward
        w = torch.ones(1, requires_grad=True)
        (w * 2).sum().backward()

    try:
        watched(cell)
        assert torch.Tensor.__dict__["backward"] is during["patch"]  # the user's patch stays
        w = torch.ones(1, requires_grad=True)
        (w * 2).sum().backward()  # through the user's patch and gradwatch's inert wrapper
        assert calls == [1, 1] and w.grad.tolist() == [2.0]
    finally:
        torch.Tensor.backward = untouched["Tensor.backward"]


# --- the optimizer table ---------------------------------------------------------------------------
def test_registering_optimizers_costs_the_same_per_optimizer_with_many(untouched):
    """Naming a tensor's owners looks up an index, not every optimizer (issue 12: 1,000
    optimizers of one tensor each were quadratic). Counted in reads of ``param_groups``."""
    reads = [0]

    class CountingSGD(torch.optim.SGD):
        def __getattribute__(self, name):
            if name == "param_groups":
                reads[0] += 1
            return super().__getattribute__(name)

    def reads_for(n: int) -> int:
        tensors = [torch.zeros(1, requires_grad=True) for _ in range(n)]
        reads[0] = 0

        def cell():
            opts = [CountingSGD([t], lr=0.1) for t in tensors]
            for opt in opts:
                opt.zero_grad()
            torch.stack(tensors).sum().backward()
            for opt in opts:
                opt.step()
        report = watched(cell)
        assert report.codes == []
        return reads[0]

    small, large = reads_for(25), reads_for(200)
    assert large <= 8 * small * 1.25  # linear: 8 times the optimizers, 8 times the reads


def test_a_patch_set_aside_is_the_original_until_every_reason_is_gone():
    from gradwatch.install.installer import Installer

    class Owner:
        def f(self):
            return "original"

    original = Owner.__dict__["f"]
    installer = Installer(lambda exc: None)
    installer.set_aside("not tracing")  # (before the patch: it starts aside)
    installer.patch(Owner, "f", lambda orig: lambda self: "patched", can_set_aside=True)
    assert Owner.__dict__["f"] is original
    installer.put_aside_back("not tracing")
    assert Owner().f() == "patched"
    installer.set_aside("compiled code")  # dynamo runs frames: it sees the original
    installer.set_aside("not tracing")
    installer.put_aside_back("compiled code")
    assert Owner.__dict__["f"] is original and Owner().f() == "original"
    installer.put_aside_back("not tracing")
    assert Owner().f() == "patched"
    installer.set_aside("compiled code")
    installer.close()  # closed while aside: the original stays
    installer.put_aside_back("compiled code")
    assert Owner.__dict__["f"] is original
