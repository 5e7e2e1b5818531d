"""One record per optimizer for the training monitor and its parts: the per-optimizer counters
live here, once, keyed by the session's optimizer key (`install/optimizer_table.py`), and each
part keeps its own state for the optimizer on the same record instead of in a table of its own.
"""

from __future__ import annotations

import weakref
from typing import Any


class OptimizerRecord:
    __slots__ = ("key", "ref", "steps", "backwards_at_step", "backwards_at_zero_grad", "has_values", "order",
                 "series")

    def __init__(self, optimizer: Any, key: int) -> None:
        self.key = key
        self.ref = weakref.ref(optimizer)
        self.steps = 0  # step() calls (counted when step() starts)
        # `backward()` calls (those that fill .grad) seen at its last step() (after it, when a
        # closure ran backward() inside it) and at its last zero_grad() (-1: none yet)
        self.backwards_at_step = 0
        self.backwards_at_zero_grad = -1
        self.has_values = False  # its parameters hold values (not meta tensors or FakeTensors), once seen to
        self.order: Any = None  # StepOrder's state for it (step_order._Opt), once it has some
        self.series: Any = None  # GradStats' gradient statistics of it (grad_stats._Series)

    def optimizer(self) -> Any:
        return self.ref()
