"""The optimizers a session has seen: one table for everyone who needs them.

Each optimizer gets a row (`OptimizerRecord`): a key (1, 2, ... in the order they were seen), a
weak reference, when known the location that built it, and its counters, kept once for the
session and every monitor. Which optimizers own a tensor is an index kept as optimizers are
registered, so naming a tensor's owners costs the same with 1 or 1,000 optimizers (a scan of
all optimizers per tensor made registering n optimizers quadratic).
"""

from __future__ import annotations

import weakref
from typing import Any

from ..diagnostics import Location


class OptimizerRecord:
    """One optimizer's row. Each counter has one writer: the session counts steps and what
    the missing-gradient checks found, `StepOrder` the ``backward()`` calls at its step() and
    zero_grad(); everyone reads them."""

    __slots__ = ("key", "ref", "steps", "checked_steps", "steps_missing", "calls_at_step_or_zero_grad",
                 "backwards_at_step", "backwards_at_zero_grad", "has_values", "order", "series", "thinned")

    def __init__(self, optimizer: Any, key: int) -> None:
        self.key = key
        self.ref = weakref.ref(optimizer)
        self.steps = 0  # step() calls (counted when step() starts)
        self.checked_steps = 0  # ... of them checked for parameters without a gradient
        self.steps_missing = 0  # ... of those, steps that found some
        # backward() and autograd.grad() calls (a gradient may be computed by autograd.grad and
        # assigned to .grad) at its last step() or zero_grad(): the calls that feed its next step
        self.calls_at_step_or_zero_grad = 0
        # backward() calls (those that fill .grad) at its last step() (after it, when a closure
        # ran backward() inside it) and at its last zero_grad() (-1: none yet)
        self.backwards_at_step = 0
        self.backwards_at_zero_grad = -1
        self.has_values = False  # its parameters hold values (not meta tensors or FakeTensors), once seen to
        self.order: Any = None  # StepOrder's state for it (step_order._Opt), once it has some
        self.series: Any = None  # GradStats' gradient statistics of it (grad_stats._Series)
        # this step is left out of the sampled checks: many optimizers step per iteration and
        # it is another's turn (`StepSchedule.thinned`; set by the session before each step)
        self.thinned = False

    def optimizer(self) -> Any:
        return self.ref()


class OptimizerTable:
    def __init__(self) -> None:
        self._by_key: dict[int, OptimizerRecord] = {}  # key -> its row
        self.locations: dict[int, Location] = {}  # key -> where it was built
        # id(tensor) -> (key, group, position) of each optimizer that holds it, in key order: the
        # entry counts for an optimizer while it holds a tensor of that id there (ids of dead
        # tensors are reused). Numbers only: the collector stops walking them, where a weak
        # reference per tensor was one object more to walk (10,000 tensors: 20,000 objects)
        self._owners: dict[int, tuple[tuple[int, int, int], ...]] = {}
        # id(optimizer) -> its row, for the per-step lookup at C speed (1,000 optimizers stepping
        # each iteration): a row counts only while ``row.ref() is optimizer`` (ids are reused)
        self.rows_by_id: dict[int, OptimizerRecord] = {}
        self._serial = 0
        # (key, the ids of the tensors of one of its parameter groups) for each group of every
        # optimizer indexed: at the last `reindex`, and since then registered, in key order
        self._indexed_shapes: list[tuple[int, tuple[int, ...]]] = []

    def __len__(self) -> int:
        """How many of the optimizers are alive."""
        return len(self.items())

    def __bool__(self) -> bool:
        """Whether one of the optimizers is alive (stops at the first: once per traced backward)."""
        return any(record.ref() is not None for record in self._by_key.values())

    def __contains__(self, optimizer: Any) -> bool:
        return self.record(optimizer) is not None

    def register(self, optimizer: Any, location: Location | None) -> OptimizerRecord:
        """A row for ``optimizer`` (a few dict writes: 1,000 optimizers built in a cell), its
        tensors indexed by owner at once."""
        self._serial += 1
        key = self._serial
        record = self._by_key[key] = self.rows_by_id[id(optimizer)] = OptimizerRecord(optimizer, key)
        if location is not None:
            self.locations[key] = location
        self._index(optimizer, key)
        groups = optimizer.param_groups
        if len(groups) == 1:  # (without a comprehension: 1,000 one-group optimizers)
            self._indexed_shapes.append((key, tuple(map(id, groups[0]["params"]))))
        else:
            self._indexed_shapes += [(key, tuple(map(id, g["params"]))) for g in groups]
        return record

    def record(self, optimizer: Any) -> OptimizerRecord | None:
        """The optimizer's row, or None for one not registered."""
        record = self.rows_by_id.get(id(optimizer))
        return record if record is not None and record.ref() is optimizer else None

    def get(self, optimizer: Any) -> int | None:
        """The optimizer's key, or None for one not registered."""
        record = self.record(optimizer)
        return record.key if record is not None else None

    def optimizer(self, key: int) -> Any:
        """The optimizer of ``key``, or None once it is gone."""
        record = self._by_key.get(key)
        return record.ref() if record is not None else None

    def records(self) -> list[OptimizerRecord]:
        """Every row, in key order (also of optimizers that are gone: their counts stay)."""
        return list(self._by_key.values())

    def items(self) -> list[tuple[Any, int]]:
        """(optimizer, key) of the live optimizers, in key order (a list built at C speed: a
        traced backward reads it a few times, with 1,000 optimizers)."""
        live = [(record.ref(), record.key) for record in self._by_key.values()]
        return [item for item in live if item[0] is not None]

    def keys(self) -> list[Any]:
        """The live optimizers, in key order (one pass over the rows)."""
        return [opt for record in self._by_key.values() for opt in (record.ref(),) if opt is not None]

    def owners(self, tensor: Any) -> list[tuple[Any, int]]:
        """(optimizer, key) of the live optimizers that hold ``tensor``, in key order."""
        live = [(self._by_key[key].ref(), key) for key in self._keys_of(id(tensor))]
        return [item for item in live if item[0] is not None]  # (gone since, in a finalizer)

    def owner_keys_of(self, tensor: Any) -> list[int]:
        """The keys of the live optimizers that hold ``tensor``, in key order."""
        entry = self._owners.get(id(tensor))
        if entry is None:
            return []
        if len(entry) == 1:  # (`_keys_of`, inline for the common case: once per tensor a traced backward reaches)
            key, group, position = entry[0]
            opt = self._by_key[key].ref()
            if opt is not None and len(groups := opt.param_groups) > group \
                    and len(params := groups[group]["params"]) > position and params[position] is tensor:
                return [key]
        return list(self._keys_of(id(tensor)))

    def _keys_of(self, tensor_id: int) -> tuple[int, ...]:
        """The keys of the live optimizers that hold the tensor of this id where it was indexed."""
        entry = self._owners.get(tensor_id)
        if entry is None:
            return ()
        by_key = self._by_key
        keys = []
        for key, group, position in entry:
            opt = by_key[key].ref()
            try:
                if opt is not None and id(opt.param_groups[group]["params"][position]) == tensor_id:
                    keys.append(key)
            except (IndexError, KeyError, TypeError):
                pass
        return tuple(keys)

    def reindex(self, items: list[tuple[Any, int]] | None = None) -> None:
        """Index again when parameter groups changed since (added after construction, grown,
        a tensor replaced) or an optimizer is gone; once per traced backward. Unchanged (the
        common case), the groups' tensor ids are compared at C speed, with no Python call per
        optimizer, and nothing is indexed anew (10,000 tensors: 0.2 ms, not 10,000 index
        entries rebuilt; 1,000 optimizers: one comprehension). ``items``: `items()`, if the
        caller listed them already."""
        if items is None:
            items = self.items()
        shapes = [(key, tuple(map(id, g["params"]))) for opt, key in items for g in opt.param_groups]
        if shapes == self._indexed_shapes:
            return
        self._owners.clear()
        for opt, key in items:  # (in key order)
            self._index(opt, key)
        self._indexed_shapes = shapes

    def owner_keys(self, tensor_ids: set[int]) -> set[int]:
        """The keys of the live optimizers that hold one of these (live) tensors: for each
        optimizer, its groups' tensor ids looked up at C speed until the first one found (a
        backward that reaches a 10,000-tensor model's first parameter stops there; 1,000
        one-tensor optimizers cost 1,000 lookups, as one per tensor did)."""
        keys: set[int] = set()
        found = tensor_ids.__contains__
        for record in self._by_key.values():  # (no listing of the rows, no call per one-group optimizer)
            opt = record.ref()
            if opt is None:
                continue
            groups = opt.param_groups
            if any(map(found, map(id, groups[0]["params"]))) if len(groups) == 1 else \
                    any(any(map(found, map(id, group["params"]))) for group in groups):
                keys.add(record.key)
        return keys

    def _index(self, optimizer: Any, key: int) -> None:
        owners = self._owners
        for g, group in enumerate(optimizer.param_groups):
            for i, p in enumerate(group["params"]):
                entry = owners.get(id(p))
                if entry is None:
                    owners[id(p)] = ((key, g, i),)
                elif all(k != key for k, _, _ in entry):
                    # (entries of optimizers that no longer hold a tensor of this id: dropped)
                    held = self._keys_of(id(p))
                    owners[id(p)] = (*(e for e in entry if e[0] in held), (key, g, i))
