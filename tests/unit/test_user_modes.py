"""gradwatch's own tensor work stays out of the user's view: a TorchFunctionMode or
TorchDispatchMode of the user's counts the same ops with and without gradwatch, torch.jit.trace
records the same graph, and what cannot be inspected (FakeTensors, torch.func transforms, meta
tensors) is skipped quietly (issue 11, items 12-14)."""

from __future__ import annotations

import warnings
from typing import Any, Callable

import pytest

torch = pytest.importorskip("torch")

import gradwatch  # noqa: E402
from torch import nn  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402


class CountFunctions(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


class CountDispatch(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def _watched(fn: Callable[[], Any]) -> tuple[Any, list[str], list[str]]:
    """fn's result under gradwatch, the warnings it raised and the report's codes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gradwatch.watch(warn=False) as report:
            result = fn()
    return result, [f"{w.category.__name__}: {w.message} @{w.filename}" for w in caught], \
        [d.code for d in report.diagnostics]


def _train(modes_inside: bool) -> tuple[int, int, list[float]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    functions, dispatch = CountFunctions(), CountDispatch()
    losses = []
    if not modes_inside:
        dispatch.__enter__()
        functions.__enter__()
    for _ in range(4):  # traced iterations, then the per-step checks
        if modes_inside:
            dispatch.__enter__()
            functions.__enter__()
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if modes_inside:
            functions.__exit__(None, None, None)
            dispatch.__exit__(None, None, None)
    if not modes_inside:
        functions.__exit__(None, None, None)
        dispatch.__exit__(None, None, None)
    return functions.n, dispatch.n, losses


@pytest.mark.parametrize("modes_inside", [True, False], ids=["modes-in-the-loop", "modes-around-the-loop"])
def test_users_modes_count_the_same_ops_with_and_without_gradwatch(modes_inside: bool) -> None:
    functions, dispatch, losses = _train(modes_inside)
    assert functions > 100 and dispatch > 100  # the modes do see the training
    watched, caught, codes = _watched(lambda: _train(modes_inside))
    assert watched == (functions, dispatch, losses)
    assert caught == [] and codes == []


def test_jit_trace_inside_a_watched_cell_records_the_same_graph_and_no_warning() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(3, 4)

    def trace() -> tuple[list[str], torch.Tensor, list[str]]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            traced = torch.jit.trace(model, x)
            out = traced(x)
        kinds = [node.kind() for node in traced.inlined_graph.nodes()]
        return sorted(f"{w.category.__name__}: {w.message}" for w in caught), out, kinds

    plain_warnings, plain_out, plain_graph = trace()
    (watched_warnings, watched_out, watched_graph), _, codes = _watched(trace)
    assert not any("TracerWarning" in w for w in watched_warnings), watched_warnings
    assert watched_warnings == plain_warnings
    assert "aten::isfinite" not in watched_graph
    assert watched_graph == plain_graph  # no op of gradwatch's recorded into the trace
    assert torch.equal(watched_out, plain_out)
    assert codes == []


def _fake_tensor_training() -> tuple[tuple[int, ...], tuple[int, ...]]:
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        model = nn.Linear(4, 2)
        loss = model(torch.randn(8, 4)).sum()
        loss.backward()
        return tuple(model.weight.grad.shape), tuple(loss.shape)


def _per_sample_gradients() -> list[float]:
    from torch.func import functional_call, grad, vmap

    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    params = {k: v.detach() for k, v in model.named_parameters()}
    x, y = torch.randn(8, 4), torch.randn(8, 2)

    def loss_of(p, xi, yi):
        return nn.functional.mse_loss(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    grads = vmap(grad(loss_of), in_dims=(None, 0, 0))(params, x, y)
    return grads["weight"].sum(dim=(1, 2)).tolist()


def _meta_model_training() -> tuple[tuple[int, ...], str]:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).to("meta")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(16, 4, device="meta")
    for _ in range(3):
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
    return tuple(model[0].weight.grad.shape), str(loss.device)


@pytest.mark.parametrize("program", [_fake_tensor_training, _per_sample_gradients, _meta_model_training],
                         ids=["FakeTensorMode", "vmap-per-sample-grad", "meta-device"])
def test_what_cannot_be_inspected_is_skipped_quietly(program: Callable[[], Any]) -> None:
    plain = program()
    watched, caught, codes = _watched(program)
    assert watched == plain
    assert caught == []  # (FakeTensor warned from provenance.py about data pointers)
    assert codes == []  # no GW900


# functorch keeps a stack of transforms in a per-thread state that torch makes on first use and
# then copies at every autograd node of every backward of that thread (about 1.4% of a small
# MLP's step, for the rest of the process). These calls make it; a torch.func transform's
# dispatch keys tell gradwatch the same (`provenance.inspectable`) without it.
_MAKES_FUNCTORCH_STATE = {"peek_interpreter_stack", "get_interpreter_stack", "current_level",
                          "maybe_current_level", "get_dynamic_layer_stack_depth"}


def test_watching_leaves_functorch_thread_state_unmade() -> None:
    import sys
    import threading

    called: list[str] = []

    def spy(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call" and getattr(arg, "__name__", "") in _MAKES_FUNCTORCH_STATE:
            called.append(arg.__name__)

    def program() -> None:  # traced steps (every op inspected) and steady ones
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(16, 4), torch.randn(16, 2)
        for _ in range(6):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()

    def in_thread() -> None:
        sys.setprofile(spy)
        try:
            _watched(program)
        finally:
            sys.setprofile(None)

    thread = threading.Thread(target=in_thread)  # (a thread of its own: the suite's stays as it is)
    thread.start()
    thread.join()
    assert called == []
