"""Does an op pass a gradient to its inputs? Asked of autograd, not of a list.

Some differentiable ops give their inputs a gradient that is zero by definition: sampling
(`torch.normal(mu, std)`, `bernoulli(p)`), rounding (`round`, `floor`, `sign` ...). Whether an op
is one of them is a property of its backward formula, so it is probed once per (op, backward
node type): the op is re-run on fresh random inputs of the same shapes, at two scales (so a
threshold such as `clamp(x, min=5)` or a zero mask in the user's data is not taken for the op's
nature), and autograd is asked for the inputs' gradients. Zero for every input at both scales:
the op passes no gradient. The probe forks the random number generators (the user's stream of
random numbers stays as it was), runs on a thread of its own (no mode, hook or checkpoint of
the user's sees it) and never touches the user's tensors or graph.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any, Callable

import torch

_SCALES = (1.0, 100.0)
_MAX_PROBE_ELEMENTS = 1 << 20  # bigger calls are not probed (a later, smaller call of the op is)
# ... nor calls with a longer list of tensors (`torch.stack` of 5,000 layer outputs: the probe
# would make 10,000 random tensors and run a backward through them, ~0.3 s)
_MAX_PROBE_TENSORS = 64
_MAX_VERDICTS = 4096
_verdicts: dict[tuple[str, type, tuple], bool] = {}
_ENGINE = torch.autograd.Variable._execution_engine  # pyright: ignore[reportAttributeAccessIssue]


def passes_no_gradient(op: str, func: Callable, args: tuple, kwargs: dict, out: torch.Tensor) -> bool:
    """Whether ``func`` (which made ``out`` from ``args``) gives its inputs a zero gradient by
    its nature. Cached per (op, backward node type); False when the probe cannot tell."""
    grad_fn = out.grad_fn
    if grad_fn is None:
        return False
    scalars = _scalars(args) + _scalars(tuple(kwargs.items())) if kwargs else _scalars(args)
    if scalars and any(v == 0 for v in scalars if isinstance(v, (int, float)) and not isinstance(v, bool)):
        return False  # `0 * aux_loss`: a zero weight in the data, not the op's nature (GW114's case)
    key = (op, type(grad_fn), scalars)  # `dropout(p=1.0)` is not `dropout(p=0.1)`
    verdict = _verdicts.get(key)
    if verdict is False:  # (most ops: no compile check needed for that answer)
        return False
    if torch.compiler.is_compiling():
        return False
    if verdict is None:
        if len(_verdicts) >= _MAX_VERDICTS:
            return False
        verdict = _probe(func, args, kwargs)
        if verdict is None:
            return False
        _verdicts[key] = verdict
    return verdict


def _probe(func: Callable, args: tuple, kwargs: dict) -> bool | None:
    """The verdict, or None when this call is too big to probe."""
    if _long_tensor_list((args, tuple(kwargs.values()))):
        return None
    tensors: list[torch.Tensor] = []
    _collect(args, tensors)
    _collect(list(kwargs.values()), tensors)
    floating = [t for t in tensors if t.is_floating_point()]
    if not floating:
        return False
    if sum(t.numel() for t in floating) > _MAX_PROBE_ELEMENTS:
        return None
    # On a thread of its own: grad mode, autocast, torch function and dispatch modes and the
    # saved-tensor hooks of a non-reentrant checkpoint are per thread, so none of the user's
    # sees the probe (a checkpoint would count its saved tensors and fail on recomputation).
    verdict: list[bool] = []
    worker = threading.Thread(target=lambda: verdict.append(_probe_here(func, args, kwargs, floating)),
                              name="gradwatch-probe", daemon=True)
    # the op warns as the user's call already did (a broadcast in `mse_loss`): not shown again.
    # Only the display is swapped, not the filters (changing those resets "once" registries).
    shown = warnings.showwarning
    warnings.showwarning = _swallow
    try:
        worker.start()
        worker.join()
    finally:
        warnings.showwarning = shown
    return bool(verdict and verdict[0])


def _swallow(*_: Any, **__: Any) -> None:
    pass


def _probe_here(func: Callable, args: tuple, kwargs: dict, floating: list[torch.Tensor]) -> bool:
    devices = sorted({t.device.index or 0 for t in floating if t.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            return all(_zero_at_scale(func, args, kwargs, scale) for scale in _SCALES)
    except Exception:  # an op that refuses random inputs: no verdict, so not flagged
        return False


def _zero_at_scale(func: Callable, args: tuple, kwargs: dict, scale: float) -> bool:
    leaves: list[torch.Tensor] = []

    def fresh(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            # positive values, so ops with a domain (a standard deviation, a probability
            # after scaling) accept them; two scales tell thresholds from the op's nature
            leaf = (torch.rand(value.shape, dtype=value.dtype, device=value.device) * scale + 0.01) \
                .requires_grad_(value.requires_grad)
            if value.requires_grad:
                leaves.append(leaf)
            return leaf
        if isinstance(value, (list, tuple)):
            return type(value)(fresh(v) for v in value)
        return value

    new_args = tuple(fresh(a) for a in args)
    new_kwargs = {k: fresh(v) for k, v in kwargs.items()}
    if not leaves:
        return False
    out = func(*new_args, **new_kwargs)
    outputs: list[torch.Tensor] = []
    _collect(out, outputs)
    outputs = [o for o in outputs if o.requires_grad and o.is_floating_point()]
    if not outputs:
        return False
    # random output gradients: with ones, an op whose outputs sum to a constant (softmax) would
    # look gradient-free; the engine itself, as `torch.autograd.grad` is watched (it would count
    # as the user's backward)
    grads = _ENGINE.run_backward(tuple(outputs), tuple(torch.randn_like(o) for o in outputs), False, False,
                                 tuple(leaves), True, accumulate_grad=False)
    return all(g is None or not bool(g.any()) for g in grads)


# the exact types of plain tensors (no subclass of the user's: the common case, told apart
# from the others by one set lookup on the hot path); the tracing mode uses them too
PLAIN_TENSORS = frozenset({torch.Tensor, torch.nn.Parameter})


def _scalars(values: tuple) -> tuple:
    """The plain numbers and flags among a call's arguments (one level into tuples)."""
    out: list[Any] = []
    tensor_types = PLAIN_TENSORS
    for v in values[:32]:
        if type(v) in tensor_types:  # (most arguments: every traced op asks)
            continue
        if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str):  # a keyword argument
            v = v[1]
        if isinstance(v, (int, float, bool, str)) or v is None:
            out.append(v)
    return tuple(out)


def _long_tensor_list(values: tuple | list, depth: int = 0) -> bool:
    """Whether the arguments (positional, keyword), an argument or an item of one is a list of
    more than _MAX_PROBE_TENSORS tensors."""
    for v in values:
        if isinstance(v, (list, tuple)) and v:
            if len(v) > _MAX_PROBE_TENSORS and isinstance(v[0], torch.Tensor):
                return True
            if depth < 2 and _long_tensor_list(v, depth + 1):
                return True
    return False


def _collect(values: Any, out: list[torch.Tensor], depth: int = 0) -> None:
    if isinstance(values, torch.Tensor):
        out.append(values)
    elif depth < 2 and isinstance(values, (list, tuple)):
        for v in values[:64]:
            _collect(v, out, depth + 1)
