"""The optimizers a session has seen: one table for everyone who needs them.

Each optimizer gets a key (1, 2, ... in the order they were seen), a weak reference and, when
known, the location that built it. Which optimizers own a tensor is an index kept as optimizers
are registered, so naming a tensor's owners costs the same with 1 or 1,000 optimizers (a scan
of all optimizers per tensor made registering n optimizers quadratic).
"""

from __future__ import annotations

import weakref
from typing import Any, Iterator

from torch.utils.weak import WeakIdKeyDictionary

from ..diagnostics import Location


class OptimizerTable:
    def __init__(self) -> None:
        self._keys = WeakIdKeyDictionary()  # optimizer -> key
        self._refs: dict[int, weakref.ref] = {}  # key -> optimizer
        self.locations: dict[int, Location] = {}  # key -> where it was built
        # id(tensor) -> (the tensor, keys of the optimizers that hold it, in key order)
        self._owners: dict[int, tuple[weakref.ref, list[int]]] = {}
        self._last: tuple[weakref.ref, int] | None = None  # the same optimizer every step: no lookup
        self._serial = 0

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, optimizer: Any) -> bool:
        return optimizer in self._keys

    def register(self, optimizer: Any, location: Location | None) -> int:
        self._serial += 1
        key = self._serial
        self._keys[optimizer] = key
        self._refs[key] = weakref.ref(optimizer)
        if location is not None:
            self.locations[key] = location
        self._index(optimizer, key)
        return key

    def get(self, optimizer: Any) -> int | None:
        """The optimizer's key, or None for one not registered."""
        last = self._last
        if last is not None and last[0]() is optimizer:
            return last[1]
        key = self._keys.get(optimizer)
        if key is not None:
            self._last = (weakref.ref(optimizer), key)
        return key

    def optimizer(self, key: int) -> Any:
        """The optimizer of ``key``, or None once it is gone."""
        ref = self._refs.get(key)
        return ref() if ref is not None else None

    def items(self) -> list[tuple[Any, int]]:
        """(optimizer, key) of the live optimizers, in key order."""
        return list(self._keys.items())

    def keys(self) -> Iterator[Any]:
        return (opt for opt, _ in self.items())

    def owners(self, tensor: Any) -> list[tuple[Any, int]]:
        """(optimizer, key) of the live optimizers that hold ``tensor``, in key order."""
        entry = self._owners.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return []
        found = []
        for key in entry[1]:
            opt = self.optimizer(key)
            if opt is not None:
                found.append((opt, key))
        return found

    def reindex(self) -> None:
        """Index again (parameter groups added after construction); once per traced backward."""
        self._owners.clear()
        for opt, key in sorted(self.items(), key=lambda item: item[1]):
            self._index(opt, key)

    def _index(self, optimizer: Any, key: int) -> None:
        for group in optimizer.param_groups:
            for p in group["params"]:
                entry = self._owners.get(id(p))
                if entry is None or entry[0]() is not p:
                    self._owners[id(p)] = (weakref.ref(p), [key])
                elif key not in entry[1]:
                    entry[1].append(key)
