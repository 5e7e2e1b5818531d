"""The installer: the one owner of every patch, hook and mode a watch session puts into torch.

* **One session at a time, in the whole process.** The patches are process-wide, so a session
  in a second thread is refused (`InstallConflict`) instead of stacking its patches on ours.
* **The owner thread only.** Every patch and hook observes the thread that started the session
  and passes every other thread straight through to the original; the tracing mode is pushed
  on that thread's mode stack only (modes are per thread), and comes off on it.
* **Wrappers that escape stay harmless.** A replaced function is a thin wrapper that calls the
  session's handler through a slot; ``close`` empties the slot, so a reference the user took
  during the session (``from torch.autograd import grad``) becomes a pass-through to the
  original that holds nothing of the session. An attribute is put back only while it is still
  our wrapper: a patch someone made on top of ours during the session stays.
* **Teardown cannot be cut in half.** Every undo step is idempotent; ``close`` runs them all,
  retrying a step that a ``KeyboardInterrupt`` cut short, defers SIGINT while it runs (and in
  the frames registered with `defer_interrupts_in`), and raises the interrupt after.
"""

from __future__ import annotations

import _signal  # pyright: ignore[reportMissingImports]  (signal's own calls convert to and from enums)
import functools
import signal
import threading
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any, Callable

import torch.compiler as _compiler
from torch.compiler import is_dynamo_compiling

from . import modes

if TYPE_CHECKING:
    from torch.utils.hooks import RemovableHandle

_MISSING = object()
_RETRIES = 3  # runs of one undo step that interrupts may cut short before it is given up
_claim_lock = threading.Lock()
_claimed_by: "Installer | None" = None


class InstallConflict(RuntimeError):
    """A session is active in another thread: the process-wide patches are taken."""


class _Slot:
    """What a wrapper calls while its session lives; emptied when the session ends."""

    __slots__ = ("handler", "handler_in_compiled", "thread", "callbacks", "passing")

    def __init__(self, handler: Callable[..., Any] | None, thread: int) -> None:
        # the handler calls the original as it is (the common case: no dynamo callback set) ...
        self.handler: Callable[..., Any] | None = handler
        # ... or, called eagerly from compiled code, with dynamo's callback back on for it
        self.handler_in_compiled: Callable[..., Any] | None = handler
        self.thread = thread
        self.callbacks: list[Any] = []  # dynamo's eval-frame callbacks set aside for the handler
        # calls go straight to the original for a while: the session's handler of another
        # patched function runs and calls this one (`Tensor.backward` calls `autograd.backward`)
        self.passing = False


Patch = _Slot  # what `Installer.patch` returns: `passing` sends calls straight to the original


# --- calls from compiled code ------------------------------------------------------------------
# Dynamo traces a compiled function's calls into the functions they call (it inlines them) and,
# after a graph break, runs a call eagerly with its frame callback set: every Python frame that
# call makes is then compiled (or skipped) by dynamo on its own. gradwatch stays out of both:
# traced, a wrapper is the original (``is_compiling()`` first: the only work dynamo traces);
# called eagerly, the handler runs with the callback off (dynamo sees none of gradwatch's
# frames) and the original with it back on (dynamo sees the original's frames as without us).
# The wrappers' own frames are skipped by dynamo (`compiled.py` marks `Installer.entry_codes`).
try:
    from torch._C._dynamo.eval_frame import get_eval_frame_callback, set_eval_frame
except ImportError:  # pragma: no cover - a torch without dynamo
    def get_eval_frame_callback() -> Any:
        return None

    def set_eval_frame(callback: Any) -> Any:
        return None


def _wraps(original: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`functools.wraps`, without dynamo's marks (a `torch._disable_dynamo` function's): dynamo
    is to trace into the wrapper and meet the mark on the original, as it does without us."""
    def wraps(wrapper: Callable[..., Any]) -> Callable[..., Any]:
        functools.update_wrapper(wrapper, original)
        for name in [n for n in vars(wrapper) if n.startswith("_torchdynamo")]:
            delattr(wrapper, name)
        return wrapper
    return wraps


def _wrapper(original: Callable[..., Any], slot: _Slot) -> Callable[..., Any]:
    get_ident = threading.get_ident

    @_wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # first: traced by dynamo (which folds is_dynamo_compiling() to True), or run while it
        # compiles, the wrapper is the original (is_compiling(), in one call fewer)
        if is_dynamo_compiling() or _compiler._is_compiling_flag:
            return original(*args, **kwargs)
        __tracebackhide__ = True  # noqa: F841  (IPython hides this frame in tracebacks)
        handler = slot.handler
        if handler is None or slot.passing or get_ident() != slot.thread:
            return original(*args, **kwargs)
        callback = get_eval_frame_callback()
        if callback is None:
            return handler(*args, **kwargs)
        in_compiled = slot.handler_in_compiled
        if in_compiled is None:
            return original(*args, **kwargs)
        slot.callbacks.append(callback)  # called eagerly from compiled code
        set_eval_frame(None)
        try:
            return in_compiled(*args, **kwargs)
        finally:
            set_eval_frame(callback)
            slot.callbacks.pop()
    return wrapper


def _original_call(original: Callable[..., Any], slot: _Slot) -> Callable[..., Any]:
    """``original`` as the handler that runs eagerly from compiled code calls it: with dynamo's
    callback back on (the wrapper took it off)."""
    @functools.wraps(original)
    def call_original(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # noqa: F841
        if not slot.callbacks:
            return original(*args, **kwargs)
        off = set_eval_frame(slot.callbacks[-1])
        try:
            return original(*args, **kwargs)
        finally:
            set_eval_frame(off)
    return call_original


def _dynamo_internal_wrapper(original: Callable[..., Any], slot: _Slot) -> Callable[..., Any]:
    """A wrapper of one of dynamo's own functions: it runs while dynamo compiles, too."""
    get_ident = threading.get_ident

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        handler = slot.handler
        if handler is None or get_ident() != slot.thread:
            return original(*args, **kwargs)
        return handler(*args, **kwargs)
    return wrapper


def _owner_thread_hook(fn: Callable[..., Any], thread: int) -> Callable[..., Any]:
    get_ident = threading.get_ident

    def on_owner_thread(*args: Any, **kwargs: Any) -> Any:
        # first: traced by dynamo (a compiled step) or run while it compiles, nothing of ours runs
        if is_dynamo_compiling() or _compiler._is_compiling_flag:
            return None
        if get_ident() != thread:
            return None
        callback = get_eval_frame_callback()
        if callback is None:
            return fn(*args, **kwargs)
        set_eval_frame(None)  # run eagerly from compiled code: dynamo sees none of our frames
        try:
            return fn(*args, **kwargs)
        finally:
            set_eval_frame(callback)
    return on_owner_thread


def _own_attribute(owner: Any, name: str) -> Any:
    """``owner.name`` as set on ``owner`` itself (a class's own dict, not inherited)."""
    return owner.__dict__.get(name, _MISSING) if isinstance(owner, type) else getattr(owner, name, _MISSING)


class _Lifted:
    """`Installer.lifted`'s block (a class: two calls per block, not a generator's five)."""

    __slots__ = ("_installer", "_mode", "_lifted")

    def __init__(self, installer: Installer, mode: Any) -> None:
        self._installer, self._mode, self._lifted = installer, mode, False

    def __enter__(self) -> None:
        self._lifted = self._installer.lift(self._mode)

    def __exit__(self, *exc: Any) -> None:
        if self._lifted:
            self._lifted = False
            self._installer.put_back(self._mode)


class Hook:
    """A hook registered with torch through the installer: removable any number of times."""

    def __init__(self, handle: RemovableHandle, installer: Installer) -> None:
        self._handle, self._installer = handle, installer

    def remove(self) -> None:
        self._handle.remove()
        self._installer._hooks.pop(id(self), None)


class Installer:
    """Installs for one session; `close` takes everything off (idempotent, interrupt-proof)."""

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        self.thread = threading.get_ident()
        self._on_error = on_error
        self._undo: list[Callable[[], None]] = []  # in install order; undone last first
        self._hooks: dict[int, Hook] = {}
        self._modes: list[Any] = []  # modes pushed on the owner thread's stack
        # patches that can be set aside: (owner, name, the wrapper, the original)
        self._asides: list[tuple[Any, str, Callable[..., Any], Any]] = []
        self._aside_for: set[str] = set()  # why they are the originals now ("compiled code runs")
        self._defer_codes: set[CodeType] = set()
        self._closing = False
        self._interrupted: FrameType | None = None  # a SIGINT deferred while closing
        self._previous_sigint: Any = None

    # --- the session's claim on the process ---------------------------------------------------
    def claim(self) -> None:
        """Take the process-wide patches for this session, or raise `InstallConflict`."""
        global _claimed_by
        with _claim_lock:
            holder = _claimed_by
            if holder is not None and holder is not self:
                raise InstallConflict("a gradwatch session is active in another thread; sessions "
                                      "in two threads cannot overlap (torch's functions are patched "
                                      "process-wide)")
            _claimed_by = self
        self._undo.append(self._release)
        self._defer_sigint()

    def _release(self) -> None:
        global _claimed_by
        with _claim_lock:
            if _claimed_by is self:
                _claimed_by = None

    @staticmethod
    def entry_codes() -> tuple[CodeType, ...]:
        """The code of every function through which torch calls into the session (wrappers
        of patched functions, hooks)."""
        slot = _Slot(None, 0)
        return (_wrapper(print, slot).__code__, _original_call(print, slot).__code__,
                _dynamo_internal_wrapper(print, slot).__code__, _owner_thread_hook(print, 0).__code__)

    @property
    def closed(self) -> bool:
        return self._closing

    def owner_thread(self) -> bool:
        return threading.get_ident() == self.thread

    # --- patches, hooks, modes ------------------------------------------------------------------
    def patch(self, owner: Any, name: str, build: Callable[[Callable[..., Any]], Callable[..., Any]],
              dynamo_internal: bool = False, can_set_aside: bool = False) -> Patch:
        """Replace ``owner.name`` by ``build(original)`` on the owner thread, for the session.

        In code that torch.compile traces, the patched function is the original (the handler
        runs when it is called eagerly); a ``dynamo_internal`` function (one of dynamo's own)
        calls the handler while dynamo compiles, too. ``build`` runs twice: the handler of
        the common case calls the original itself (no frame in between, every step), the one
        called eagerly from compiled code calls it with dynamo's callback back on.
        ``can_set_aside``: ``owner.name`` is the original itself while `set_aside` says so,
        e.g. while dynamo runs frames (a function compiled code inlines and dynamo guards on:
        an optimizer's step()) or while the session does not need it (nothing per call)."""
        original = getattr(owner, name)
        saved = _own_attribute(owner, name)
        slot = _Slot(None, self.thread)
        if dynamo_internal:
            slot.handler, wrapper = build(original), _dynamo_internal_wrapper(original, slot)
        else:
            slot.handler, wrapper = build(original), _wrapper(original, slot)
            slot.handler_in_compiled = build(_original_call(original, slot))

        def empty_slot() -> None:  # (undone after the attribute: a wrapper that escaped passes through)
            slot.handler = slot.handler_in_compiled = None
        self._undo.append(empty_slot)
        self.replace(owner, name, wrapper)
        if can_set_aside and saved is not _MISSING:
            self._asides.append((owner, name, wrapper, saved))
            if self._aside_for:
                setattr(owner, name, saved)
        return slot

    def set_aside(self, reason: str) -> None:
        """The ``can_set_aside`` patches are the originals until `put_aside_back` of every
        reason given (compiled code runs: dynamo sees the program as without gradwatch)."""
        if not self._aside_for:
            for owner, name, wrapper, original in self._asides:
                if _own_attribute(owner, name) is wrapper:
                    setattr(owner, name, original)
        self._aside_for.add(reason)

    def put_aside_back(self, reason: str) -> None:
        self._aside_for.discard(reason)
        if self._aside_for or self._closing:
            return
        for owner, name, wrapper, original in self._asides:
            if _own_attribute(owner, name) is original:  # (not one someone set meanwhile)
                setattr(owner, name, wrapper)

    def replace(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        """``owner.name = wrapper`` for the session: a wrapper that decides itself when it
        passes through (on other threads, and after `close`, where it is the original again
        unless someone patched on top of it). For a function called so often that the usual
        wrapper's extra frame shows (dynamo's `_maybe_set_eval_frame`, twice per step())."""
        saved = _own_attribute(owner, name)

        def undo() -> None:
            if _own_attribute(owner, name) is not wrapper:
                return  # restored already, or someone patched on top of us: theirs stays
            if saved is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, saved)
        self._undo.append(undo)
        setattr(owner, name, wrapper)

    def hook(self, register: Callable[[Callable[..., Any]], Any], fn: Callable[..., Any]) -> Hook:
        """``register(fn)`` (a torch global hook), called on the owner thread only."""
        hook = Hook(register(_owner_thread_hook(fn, self.thread)), self)
        if not self._hooks:
            self._undo.append(self._remove_hooks)
        self._hooks[id(hook)] = hook
        return hook

    def hook_handles(self) -> list[RemovableHandle]:
        """torch's handles of the session's live hooks (`compiled.py` takes them out of torch's
        hook dicts while dynamo runs frames: dynamo guards on those dicts)."""
        return [hook._handle for hook in self._hooks.values()]

    def _remove_hooks(self) -> None:
        for hook in list(self._hooks.values()):
            hook.remove()

    def push_mode(self, mode: Any) -> bool:
        """Push ``mode`` on the owner thread's stack (other threads: not at all)."""
        if not self.owner_thread() or self._closing:
            return False
        if not self._modes and self._remove_modes not in self._undo:
            self._undo.append(self._remove_modes)
        self._modes.append(mode)
        modes.push(mode)
        return True

    def remove_mode(self, mode: Any) -> None:
        """Take ``mode`` off the owner thread's stack (from another thread it stays, paused by
        its owner, until the session ends)."""
        if self.owner_thread() and mode in self._modes:
            modes.remove(mode)
            self._modes.remove(mode)

    def lifted(self, mode: Any) -> _Lifted:
        """``mode`` off the top of the stack for the block (autograd then runs as without
        gradwatch); back on after it, unless it was removed meanwhile."""
        return _Lifted(self, mode)

    def lift(self, mode: Any) -> bool:
        """Take ``mode`` off the top of the owner thread's stack for a while; whether it was
        there to take. `put_back` returns it (unless it was removed meanwhile)."""
        # (while tracing, around every optimizer's zero_grad() and step(): the top checked inline)
        if mode in self._modes and threading.get_ident() == self.thread:
            n = modes.depth()
            if n > 0 and modes.at(n - 1) is mode:
                modes.pop()
                return True
        return False

    def put_back(self, mode: Any) -> None:
        if mode in self._modes and threading.get_ident() == self.thread and not self._closing:
            modes.push(mode)

    def _remove_modes(self) -> None:
        if not self.owner_thread():
            if self._modes:
                self._on_error(RuntimeError("the session ended on another thread than it started "
                                            "on: its tracing mode stays on that thread, paused"))
            return
        while self._modes:
            modes.remove(self._modes[-1])
            self._modes.pop()

    def add_undo(self, undo: Callable[[], None]) -> None:
        """Run ``undo`` (idempotent) when the session ends, in reverse order of installation."""
        self._undo.append(undo)

    # --- interrupts -----------------------------------------------------------------------------
    def defer_interrupts_in(self, *codes: CodeType) -> None:
        """A SIGINT that lands in one of these functions (the session's exit, before `close`
        runs) is deferred until the teardown is done."""
        self._defer_codes.update(codes)

    def _defer_sigint(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals are delivered to the main thread only
        previous = _signal.getsignal(signal.SIGINT)
        if not callable(previous):
            return  # SIG_IGN / SIG_DFL: nothing raises KeyboardInterrupt in Python code
        self._previous_sigint = previous
        _signal.signal(signal.SIGINT, self._on_sigint)
        self._undo.append(self._restore_sigint)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> Any:
        __tracebackhide__ = True  # noqa: F841
        if self._closing or (frame is not None and frame.f_code in self._defer_codes):
            self._interrupted = frame
            return None
        return self._previous_sigint(signum, frame)

    def _restore_sigint(self) -> None:
        if _signal.getsignal(signal.SIGINT) == self._on_sigint:  # (not a handler the user set since)
            _signal.signal(signal.SIGINT, self._previous_sigint)

    # --- teardown -------------------------------------------------------------------------------
    def close(self) -> None:
        """Undo everything, newest first. Idempotent; an interrupt during it is raised after."""
        __tracebackhide__ = True  # noqa: F841
        self._closing = True
        deferred: BaseException | None = None
        retries = 0
        while self._undo:
            try:
                self._undo[-1]()
                self._undo.pop()
                retries = 0
            except KeyboardInterrupt as exc:  # cut short: run the step again, raise it after
                deferred = deferred or exc
                retries += 1
                if retries >= _RETRIES:
                    self._undo.pop()
                    retries = 0
            except Exception as exc:
                self._undo.pop()
                retries = 0
                self._on_error(exc)
        frame, self._interrupted = self._interrupted, None
        previous, self._previous_sigint = self._previous_sigint, None
        self._defer_codes.clear()
        if deferred is not None:
            raise deferred
        if frame is not None and previous is not None:
            previous(signal.SIGINT, frame)  # the deferred Ctrl-C, as the user's handler takes it

