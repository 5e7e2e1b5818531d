"""The torch function-mode stack: the one module that calls torch's private stack functions.

The stack is per thread: a mode comes off on the thread that pushed it, and a mode the user
pushed above ours stays where it is.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


# (torch's function itself, no Python frame: while tracing, every optimizer's step() and
# zero_grad() put the tracing mode back)
push: Callable[[Any], None] = torch._C._push_on_torch_function_stack
# (and for `Installer.lift`, which takes a mode off the top in its own frame: while tracing,
# every optimizer's step() and zero_grad() lift the tracing mode)
depth: Callable[[], int] = torch._C._len_torch_function_stack
at: Callable[[int], Any] = torch._C._get_function_stack_at
pop: Callable[[], Any] = torch._C._pop_torch_function_stack


def on_stack(mode: Any) -> bool:
    """Whether ``mode`` is on this thread's stack."""
    return any(torch._C._get_function_stack_at(i) is mode for i in range(torch._C._len_torch_function_stack()))


def remove(mode: Any) -> None:
    """Take ``mode`` off this thread's stack (no-op when it is not there); modes above stay."""
    if not on_stack(mode):
        return
    above = []
    while torch._C._len_torch_function_stack() > 0:
        top = torch._C._pop_torch_function_stack()
        if top is mode:
            break
        above.append(top)
    for other in reversed(above):
        torch._C._push_on_torch_function_stack(other)


def disabled() -> Any:
    """No torch function mode sees the ops of the block (gradwatch's own tensor work)."""
    return torch._C.DisableTorchFunction()
