"""gradwatch: find out why gradients do not reach your parameters.

In a notebook::

    %load_ext gradwatch

    %%gradwatch
    ...training code...

In a script::

    with gradwatch.watch() as report:
        ...training code...
    print(report)
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["GradwatchWarning", "FailFastError", "Report", "Diagnostic", "watch", "last_report",
           "load_ipython_extension", "unload_ipython_extension", "__version__"]

from .diagnostics import Diagnostic  # noqa: E402  (no torch needed)
from .news import FailFastError  # noqa: E402
from .report import GradwatchWarning, Report  # noqa: E402

_last_report: Report | None = None


def watch(**options):
    """Watch the code in a ``with`` block; the ``as`` target is the `Report`, filled on exit.

    Options: ``select`` / ``ignore`` (rule codes or prefixes such as ``"GW0"``),
    ``trace_steps`` (backward calls traced in full, default 2), ``schedule`` (a
    `gradwatch.monitors.schedule.StepSchedule`: on which steps each per-step check samples),
    ``warn`` (issue each diagnostic as a `GradwatchWarning`, default True).

    Sessions do not nest, except in a notebook cell that ``%%gradwatch`` or ``%gradwatch on``
    watches: there ``watch()`` warns and does nothing, and its ``as`` target is the cell's
    report (filled when the cell ends).
    """
    import contextlib
    import inspect
    import sys
    import warnings

    from .session import Watch, current

    outer = current()
    magic = sys.modules.get(__name__ + ".magic")
    if outer is not None and magic is not None and magic.watches_cell(outer):
        # The notebook already watches this cell (%%gradwatch or %gradwatch on): nesting a
        # second session would abort the user's cell. Join the cell's session instead.
        warnings.warn("gradwatch.watch() inside a cell that gradwatch already watches does "
                      "nothing: the cell's session watches this code and reports it when the "
                      "cell ends (the `as` target is that report; these options are ignored)",
                      UserWarning, stacklevel=2)
        return contextlib.nullcontext(outer.report)
    if "namespace" not in options:
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None
        options["namespace"] = caller.f_globals if caller is not None else {}
    return Watch(**options)


def last_report() -> Report | None:
    """The report of the last ``%%gradwatch`` cell (or ``%gradwatch on`` cell)."""
    return _last_report


def _set_last_report(report: Report) -> None:
    global _last_report
    _last_report = report


def load_ipython_extension(ipython) -> None:
    try:
        import torch  # noqa: F401  (only: is it installed?)
    except ImportError:
        print("gradwatch needs PyTorch, which is not installed in this kernel: "
              "pip install torch")
        return
    from .magic import load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    from .magic import unload

    unload(ipython)
