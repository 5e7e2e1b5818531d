"""What a per-step monitor may use of its watch session, and nothing else.

The session builds one `MonitorHandle` of plain callables and shared tables; monitors never see
the session itself (so ``trace/`` never calls back into ``session.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import FrameType
from typing import Any, Callable

from ..diagnostics import Location
from ..events import Events
from ..locate import NamespaceIndex, Namer, Position
from .installer import Installer
from .optimizer_table import OptimizerRecord, OptimizerTable
from ..trace.provenance import Provenance
from ..monitors.schedule import StepSchedule


@dataclass(eq=False)
class MonitorHandle:
    installer: Installer  # every patch and hook a monitor needs goes through it
    provenance: Provenance  # the traced records (and their per-op observers)
    optimizers: OptimizerTable  # rows (key, weak ref, counters), locations of the session's optimizers
    schedule: StepSchedule  # on which steps each part samples
    events: Events
    tracing_mode_on: Callable[[], bool]  # whether the tracing mode is on (provenance tracing runs)
    user_frame: Callable[[FrameType | None], FrameType | None]  # the innermost user frame from here
    location: Callable[[Position], Location | None]
    namespace: Callable[[], dict[str, Any]]  # the notebook's
    namespace_index: NamespaceIndex  # its modules and optimizers, kept up to date (walk it, not the namespace)
    namer: Callable[[], Namer]  # names in the notebook, then of the optimizers' parameters
    optimizer_record: Callable[[Any], OptimizerRecord]  # its row (registered when seen for the first time)
    internal_error: Callable[[BaseException], None]  # gradwatch's own fault: reported as GW900
    request_trace: Callable[[int], None]  # trace the next iterations in full
    tell: Callable[[str, str], None]  # an error-level finding while the cell runs
    settle_steady: Callable[[], None]  # the calls a steady cycle took counted now (before a hook of its own)
