"""`cell_traceback.without_gradwatch_frames`: which frames of a watched cell's traceback IPython
shows (the kernel tests compare whole tracebacks with and without the magic)."""

from __future__ import annotations

import functools
from types import TracebackType

from gradwatch.cell_traceback import without_gradwatch_frames


def _function(name: str, module: str, body: str):
    namespace: dict = {"__name__": module}
    exec(compile(f"def {name}(inner):\n    {body}\n", f"<{module}>", "exec"), namespace)
    return namespace[name]


# IPython's run_code -> the magic's frames -> the cell's body -> a gradwatch wrapper -> user code
run_code = _function("run_code", "IPython.core.interactiveshell", "return inner()")
magic_outer = _function("run_cell_magic", "IPython.core.interactiveshell", "return inner()")
execute = _function("_execute", "gradwatch.magic", "return inner()")
body = _function("cell_body", "__main__", "return inner()")
wrapper = _function("backward", "gradwatch.session", "return inner()")
library = _function("engine", "torch.autograd", "return inner()")


def _fail():
    raise ValueError("boom")


def _traceback(*chain) -> TracebackType:
    call = _fail
    for fn in reversed(chain):
        call = functools.partial(fn, call)  # (a partial adds no frame of its own)
    try:
        call()
    except ValueError as exc:
        tb = exc.__traceback__
        assert tb is not None
        return tb.tb_next  # from run_code on, as IPython's handler gets it (not this test's frame)
    raise AssertionError("did not raise")


def _names(tb) -> list[str]:
    names = []
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return names


def test_drops_the_magics_frames_and_gradwatchs_wrappers():
    tb = _traceback(run_code, magic_outer, execute, body, wrapper, library)
    assert _names(tb) == ["run_code", "run_cell_magic", "_execute", "cell_body", "backward", "engine", "_fail"]
    plain = without_gradwatch_frames(tb, execute.__code__)
    assert _names(plain) == ["run_code", "cell_body", "engine", "_fail"]
    assert _names(tb)[1] == "run_cell_magic"  # the exception's own traceback is left as it is


def test_without_the_runner_only_gradwatchs_frames_go():
    # %gradwatch on: the cell's code runs straight from run_code
    tb = _traceback(run_code, body, wrapper, library)
    assert _names(without_gradwatch_frames(tb, None)) == ["run_code", "cell_body", "engine", "_fail"]


def test_an_error_of_the_magic_itself_keeps_only_the_head():
    # StrictModeError: raised by the magic after the body ran, so no frame of the body
    tb = _traceback(run_code, magic_outer, _function("_cell", "gradwatch.magic", "return inner()"))
    assert _names(without_gradwatch_frames(tb, execute.__code__)) == ["run_code"]


def test_a_traceback_without_gradwatch_frames_is_returned_as_is():
    tb = _traceback(run_code, body, library)
    assert without_gradwatch_frames(tb, None) is tb
    assert without_gradwatch_frames(None, None) is None
