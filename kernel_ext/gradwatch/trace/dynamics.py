"""Per-step monitors: cheap checks that run on every step of a long training loop.

A monitor is told about backward calls, optimizer steps and ``zero_grad()`` calls, keeps
bounded state (on the device where it can, so that it never forces a host-device sync per
step), and writes a summary into ``Events.extra`` when the cell ends. Rules read the summary.
"""

from __future__ import annotations

from typing import Any


class Monitor:
    """Base class: every hook is optional."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def on_backward(self, roots: list) -> None: ...

    def after_backward(self) -> None: ...

    def on_step(self, optimizer: Any, key: int) -> None: ...

    def on_zero_grad(self, optimizer: Any, key: int) -> None: ...

    def finish(self, events: Any) -> None: ...

    def close(self) -> None: ...


MONITORS: list[type[Monitor]] = []


def monitors(session: Any) -> list[Monitor]:
    return [cls(session) for cls in MONITORS]
