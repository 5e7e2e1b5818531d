"""Push/pop patching of attributes, restored in reverse order even after an exception."""

from __future__ import annotations

from typing import Any

_MISSING = object()


class Patcher:
    """Replaces attributes and puts back exactly what was there (line_profiler's approach)."""

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] = []

    def patch(self, owner: Any, name: str, replacement: Any) -> Any:
        original = owner.__dict__.get(name, _MISSING) if isinstance(owner, type) \
            else getattr(owner, name, _MISSING)
        self._saved.append((owner, name, original))
        setattr(owner, name, replacement)
        return getattr(owner, name) if original is _MISSING else original

    def restore(self) -> None:
        while self._saved:
            owner, name, original = self._saved.pop()
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
