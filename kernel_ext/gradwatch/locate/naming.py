"""The user's own names for tensors, modules and optimizers (``w``, ``model.fc1.weight``), found
by identity in the namespaces a diagnostic needs, on demand."""

from __future__ import annotations

import gc
import re
from bisect import bisect_right
from collections import Counter
from itertools import accumulate, chain, compress, count, islice, repeat
from operator import is_, is_not, itemgetter, not_
from opcode import opmap
from types import BuiltinFunctionType, CodeType, FunctionType, MethodType, ModuleType
from typing import Any, Callable, Final, Hashable, Iterator, Sequence

from ..install.collector import collection_paused


# Values that never name a tensor, module or optimizer: skipped by their exact type, without
# the checks `Namer._add` makes (a namespace of 100,000 numbers is read in milliseconds).
_INERT_TYPES = frozenset({int, float, complex, bool, str, bytes, type(None), type, FunctionType,
                          BuiltinFunctionType, MethodType, ModuleType})


# What one namespace entry names (a plain tuple: made by the ten thousand):
# ((the objects in order, their names), (tensor id, plain container) pairs of its modules'
# unregistered tensors, (parameter id, attribute) pairs of user module classes, live: its contents
# can change without a rebinding, kind: _OPTIMIZER, _MODULE or 0). The objects and names are two
# tuples, not a pair per object: a model of 10,000 parameters is two objects for the collector
# to walk, not 10,000 (their number decides when it walks the whole heap)
_Part = tuple[tuple[tuple[Any, ...], tuple[str, ...]], tuple[tuple[int, str], ...], tuple[tuple[int, str], ...],
              bool, int]
_NAMES: Final = 0
_UNREGISTERED: Final = 1
_USER_ATTRIBUTES: Final = 2
_LIVE: Final = 3
_KIND: Final = 4
_OPTIMIZER, _MODULE = 1, 2


# A namespace this large is not compared entry by entry at each refresh when the cell's code
# is known: only the entries that code can rebind are (see `NamespaceIndex`). Below it, comparing
# all bindings costs less than a tenth of a millisecond.
COMPARE_ALL_BELOW = 4_096


class NamespaceIndex:
    """The notebook namespace's names by object id, kept while one watched cell runs.

    Reading 100,000 names takes a fifth of a second, and names are asked for at every traced
    ``backward()`` and after the cell. So the index keeps what each entry names, and `refresh`
    reads again only the entries that were rebound or added, and those whose contents change in
    place (modules, user objects holding them, small containers of tensors). An entry that
    held no tensor when read and gains one in place, without a rebinding, is not seen.

    Which entries were rebound: in a small namespace, or when the cell's ``code`` is not
    known, all bindings are compared by identity (at C speed); in a large one, only those of
    the names the cell's code mentions and of the globals the notebook's functions assign
    (`_bindable_names`): a refresh then costs what the cell's code can change, not the size
    of the namespace. A cell that rebinds names otherwise (``globals()``, ``exec``, ``del``,
    IPython magics, a ``*`` import) is compared in full. Code that is neither the cell's nor a
    notebook function or class (a module's code assigning the notebook's globals) is not seen
    rebinding them: its names are those of the last read.
    `close` drops every reference to the user's objects (the session calls it after the cell).
    """

    def __init__(self, namespace: dict[str, Any], moment: Callable[[], Hashable] | None = None,
                 code: str | None = None) -> None:
        self.namespace = namespace
        self._code = code  # the cell's code (its names are those it can rebind)
        self._bindable: frozenset[str] | None = None  # `_bindable_names`, once worked out
        self._bindable_known = False
        self._kinds_read = b""  # `_kinds` of the last full read
        # bindable name -> its value when last read (None: compare all bindings), and the
        # positions of those entries found so far
        self._watched: dict[str, Any] | None = None
        self._watched_at: dict[str, int] = {}
        # where the user's code stands (a refresh at the same moment finds nothing new)
        self._moment = moment
        self._refreshed_at: Hashable = None
        self._bound_at: Hashable = None  # (the moment of the last refresh, of the bindings only or all)
        # the entries by position: every one while all bindings are compared (lists), else
        # only those that name something or were rebound (dicts: a hundred thousand references
        # kept would cost a walk at each garbage collection and at `close`)
        self._keys: list[str] | dict[int, str] = []
        self._values: list[Any] | dict[int, Any] = []
        self._size = 0  # entries read (0: none yet)
        self._last_key: str | None = None
        self._parts: dict[int, _Part] = {}  # what the entries that name something name (not plain tensors)
        self._plain: set[int] = set()  # positions of entries that hold a tensor and name it by the entry's name
        self._live: set[int] = set()  # positions of the entries read again at every refresh
        self._kinds: dict[int, int] = {}  # position -> _OPTIMIZER or _MODULE, for those
        # position -> `_structure` of a live entry's value when it was read: equal again, the
        # entry names the same (a model of 10,000 parameters is not walked again at each moment)
        self._structures: dict[int, tuple[Any, ...]] = {}
        self._owner: dict[int, int] = {}  # object id -> the position of the entry that names it
        self._shadowed: set[int] = set()  # ids of objects more than one entry names (the first one wins)
        # object id -> name (the objects themselves are held by the entries read: their ids stay theirs)
        self.names: dict[int, str] = {}
        self.unregistered: dict[int, str] = {}
        self.user_attributes: dict[int, str] = {}
        self.entries_read = 0  # namespace entries read one by one, in all (the cost that must not grow)
        self.entries_compared = 0  # bindings compared by identity after the first read, in all
        self.objects_named = 0  # names that reading entries produced, in all (a model's parameters...)
        # positions of the entries a bindings-only first read classified without naming what
        # they hold (a model's 10,000 parameters): named at the first refresh of the contents
        self._unread: set[int] | None = None
        self._frozen = False
        self._last_refresh = False

    def refresh(self, contents: bool = True) -> None:
        """The index brought up to date with the namespace. ``contents=False``: only the
        bindings (`optimizers` and `modules` are current; the names of a module changed in
        place are not): the live entries are not walked again (a model of 5,000 modules costs
        a walk of tens of milliseconds)."""
        if self._frozen:
            return
        if self._moment is not None:
            now = self._moment()
            if now is not None and (now == self._refreshed_at or not contents and now == self._bound_at):
                return
            self._bound_at = now
            if contents:
                self._refreshed_at = now
        if contents:
            self._frozen = self._last_refresh
        import torch

        _plain_tensor_types(torch)
        with collection_paused():  # (a model's names: tens of thousands of short-lived records)
            self._read(torch, contents)

    def _read(self, torch: Any, contents: bool) -> None:
        if not self._size and not self.namespace:
            return  # empty, and empty when last read: nothing to read again
        rebound = self._rebound() if self._size else None
        if rebound is not None:
            keys, values, parts = self._keys, self._values, self._parts
            ns = self.namespace
            unread = self._unread
            if contents:
                self._unread = None
                changed = rebound.union(self._live, unread or ())
            else:
                changed = rebound
                if unread:
                    unread.difference_update(rebound)  # (read now)
            if not changed and (unread is None or not contents):
                return
            replaced: list[tuple[int, _Part | None, _Part | None]] = []
            structures = self._structures
            for i in sorted(changed):
                value = ns[keys[i]]
                if i not in rebound and i in structures:  # contents that can change in place
                    self.entries_read += 1
                    if _structure(value, torch) == structures[i]:
                        continue  # the same modules, parameters and attributes: the same names
                new = self._read_entry(i, keys[i], value, torch)
                before = parts.get(i)
                if i in self._plain:
                    self._plain.discard(i)
                    before = _plain_part(values[i], keys[i])
                if not _same(before, new):
                    replaced.append((i, before, new))
                values[i] = value
                if new is not None:
                    parts[i] = new
                else:
                    parts.pop(i, None)
                self._classify(i, new)
            if replaced and not self._update(replaced):
                self._merge()
            return
        self._read_all(torch, contents)

    def _rebound(self) -> set[int] | None:
        """The positions of the entries rebound or added since the last read (the lists are
        extended in place for the added ones, to be read); None: read all again."""
        found = self._rebound_by_the_cell()
        if found is not None:
            return found
        ns, keys = self.namespace, self._keys
        old = len(keys)
        if type(keys) is not list or len(ns) < old or not all(map(is_, keys, ns)):
            return None
        # the same names first (an insertion-ordered dict): compare the bindings by identity,
        # without copying the namespace (two passes at C speed)
        self.entries_compared += old
        rebound = set(_found(bytes(map(is_not, self._values, ns.values())), 1))
        if len(ns) > old:
            rebound.update(self._append(list(islice(ns, old, None))))
        return rebound

    def _rebound_by_the_cell(self) -> set[int] | None:
        """`_rebound` looking only at the entries of the names the cell can rebind, and at
        the names added after the last one read; None: compare all."""
        watched = self._watched
        if watched is None:
            return None
        ns, keys, values = self.namespace, self._keys, self._values
        old, now = self._size, len(ns)
        if now < old:
            return None
        added = list(islice(reversed(ns), now - old + 1))  # (newest first, then the last one read)
        if added[-1] is not self._last_key:
            return None
        get, missing = ns.get, _MISSING
        self.entries_compared += len(watched)
        rebound: set[int] = set()
        for name, value in [(name, value) for name, value in watched.items() if get(name, missing) is not value]:
            if get(name, missing) is missing:
                return None  # (a deletion: the positions moved)
            i = self._watched_at.get(name)
            if i is None:
                i = self._watched_at[name] = _position(ns, name)  # (once per name and cell)
            keys[i] = name
            if isinstance(values, dict) and i not in values:  # (an entry that named nothing: not kept)
                values[i] = value
            watched[name] = ns[name]
            rebound.add(i)
        if now > old:
            added.pop()
            added.reverse()
            rebound.update(self._append(added))
        return rebound

    def _append(self, names: list[str]) -> range:
        old = self._size
        added = range(old, old + len(names))
        keys, values = self._keys, self._values
        if isinstance(keys, list) and isinstance(values, list):
            keys.extend(names)
            values.extend(repeat(None, len(names)))
        elif isinstance(keys, dict) and isinstance(values, dict):
            keys.update(zip(added, names, strict=True))
            values.update(dict.fromkeys(added))
        self._size, self._last_key = old + len(names), names[-1]
        if self._watched is not None:  # (a name added is watched from now on)
            get = self.namespace.get
            self._watched.update(zip(names, map(get, names), strict=True))
            self._watched_at.update(zip(names, added, strict=True))
        return added

    def _watch_bindings(self) -> None:
        """After a full read: the values of the names the cell can rebind, to compare (None:
        compare all bindings)."""
        self._watched, self._watched_at = None, {}
        bindable = self._bindable_names()
        if bindable is not None:
            ns = self.namespace
            self._watched = {name: ns[name] for name in bindable & ns.keys()}

    def _bindable_names(self) -> frozenset[str] | None:
        """The names the cell's code mentions (every word of it: a superset of those it
        assigns), those the notebook's functions and methods assign as globals, and IPython's
        ``_``; None: the cell can rebind others (or the namespace is small: compare all)."""
        if not self._bindable_known:
            self._bindable_known = True
            code = self._code
            if code is not None and self._size >= COMPARE_ALL_BELOW:
                words = set(_WORD.findall(code))
                if not (words & _REBINDS_ANY or _STAR_IMPORT.search(code)):
                    functions = list(_pick(self._values, _positions(self._kinds_read, _CODE)))
                    try:
                        assigned = _globals_assigned(functions, self.namespace)
                    except Exception:  # (a class of the user's that cannot be looked into: compare all)
                        assigned = None
                    if assigned is not None:
                        self._bindable = frozenset(words | assigned | {"_", "__", "___"})
        return self._bindable

    def _read_all(self, torch: Any, contents: bool = True) -> None:
        """Every entry read. ``contents=False``: the entries that can hold names are classified
        (optimizers, modules) but not read (`_unread`): the callers that ask for optimizers do
        not pay for naming a model's parameters."""
        ns = self.namespace
        keys, values = list(ns), list(ns.values())
        parts: dict[int, _Part] = {}
        self._live, self._kinds = set(), {}
        # each entry's kind, one byte each, at C speed: most are numbers and strings, then
        # tensors and containers; the positions of a kind are then found without a call each
        kinds = _kinds(values)
        # containers of numbers and strings only (the usual ones) name nothing: their items'
        # types are looked at once, at C speed, instead of in a Python call per container
        holding = _containers_to_read(values, kinds)
        tensors = _positions(kinds, _PLAIN_TENSOR)
        # a plain tensor's entry names it, unless its name starts with `_` (read like the others)
        tensor_keys = _pick(keys, tensors)
        hidden = set(compress(tensors, map(str.startswith, tensor_keys, repeat("_")))) \
            if "\n_" in "\n".join(("", *tensor_keys)) else set()
        # most of what a large namespace names: kept as positions, merged at C speed (no record each)
        plain = [i for i in tensors if i not in hidden] if hidden else tensors
        self._plain = set(plain)
        self._kinds_read = kinds
        self.entries_read += len(self._plain)
        others = sorted(chain(holding, hidden, _positions(kinds, _OTHER)))
        self._structures = {}
        if contents:
            self._unread = None
            for i in others:
                part = self._read_entry(i, keys[i], values[i], torch)
                if part is not None:
                    parts[i] = part
                    if part[_LIVE] or part[_KIND]:
                        self._classify(i, part)
        else:
            self._unread = set(others)
            for i in others:
                kind = _kind(keys[i], values[i], torch)
                if kind:
                    self._kinds[i] = kind
        self._keys, self._values, self._parts = keys, values, parts
        self._size, self._last_key = len(keys), keys[-1] if keys else None
        self._merge(plain)
        self._watch_bindings()
        if self._watched is not None:  # only the entries that name something (or may) are kept
            kept = sorted(chain(plain, parts, self._unread or ()))
            self._keys = dict(zip(kept, _pick(keys, kept), strict=True))
            self._values = dict(zip(kept, _pick(values, kept), strict=True))

    def _read_entry(self, i: int, var: str, value: Any, torch: Any) -> _Part | None:
        """What the entry at position ``i`` names, and the structure its names depend on when
        its contents can change in place."""
        self.entries_read += 1
        if type(value) in _INERT_TYPES:
            part = None
        else:
            structure = _structure(value, torch)  # (before the walk: nothing runs in between)
            part = _entry(var, value, torch)
            if part is not None:
                self.objects_named += len(part[_NAMES][1])
            if structure is not None and part is not None and part[_LIVE]:
                self._structures[i] = structure
                return part
        self._structures.pop(i, None)
        return part

    def _classify(self, i: int, part: _Part | None) -> None:
        if part is not None and part[_LIVE]:
            self._live.add(i)
        else:
            self._live.discard(i)
        if part is not None and part[_KIND]:
            self._kinds[i] = part[_KIND]
        else:
            self._kinds.pop(i, None)

    def _update(self, replaced: list[tuple[int, _Part | None, _Part | None]]) -> bool:
        """The merged names after a few entries changed, without merging all again; False
        when an object is named by two entries, or a module's extras changed (merge again)."""
        names, owner = self.names, self._owner
        claimed: set[int] = set()  # objects the changed entries name (two of them naming one: merge)
        for i, before, after in replaced:
            for part in (before, after):
                if part is not None and (part[_UNREGISTERED] or part[_USER_ATTRIBUTES]):
                    return False
            for obj in before[_NAMES][0] if before is not None else ():
                if owner.get(id(obj)) != i or id(obj) in self._shadowed:  # (another entry names it too)
                    return False
            for obj in after[_NAMES][0] if after is not None else ():
                if id(obj) in owner and owner[id(obj)] != i or id(obj) in claimed:
                    return False
                claimed.add(id(obj))
        for i, before, after in replaced:
            for obj in before[_NAMES][0] if before is not None else ():
                key = id(obj)
                del names[key], owner[key]
            for obj, name in zip(*after[_NAMES], strict=True) if after is not None else ():
                key = id(obj)
                names[key], owner[key] = name, i
        return True

    def _merge(self, plain: list[int] | None = None) -> None:
        """All entries' names into one table, the first entry's name winning: the plain
        tensors' entries at C speed (a dict built from reversed pairs keeps each key's first
        value), then the other entries' names, each over a later entry's."""
        plain = sorted(self._plain) if plain is None else plain  # (positions in order)
        ids = list(map(id, _pick(self._values, plain)))
        ids.reverse()
        names: dict[int, str] = dict(zip(ids, reversed(_pick(self._keys, plain)), strict=True))
        owner: dict[int, int] = dict(zip(ids, reversed(plain), strict=True))
        shadowed: set[int] = set()
        if len(owner) < len(plain):  # a tensor held by two entries
            shadowed.update(key for key, n in Counter(ids).items() if n > 1)
        unregistered: dict[int, str] = {}
        user_attributes: dict[int, str] = {}
        parts = self._parts
        never = self._size
        for i in sorted(parts):
            part = parts[i]
            for obj, name in zip(*part[_NAMES], strict=True):
                key = id(obj)
                first = owner.get(key, never)
                if first != never:
                    shadowed.add(key)
                if first > i:
                    names[key], owner[key] = name, i
            for key, container in part[_UNREGISTERED]:
                unregistered.setdefault(key, container)
            for key, attribute in part[_USER_ATTRIBUTES]:
                user_attributes.setdefault(key, attribute)
        self.names, self._owner, self._shadowed = names, owner, shadowed
        self.unregistered, self.user_attributes = unregistered, user_attributes

    def optimizers(self) -> list[tuple[str, Any]]:
        """(name, optimizer) of the namespace's optimizers, ``_``-names included, as of the last
        `refresh`."""
        return self._of_kind(_OPTIMIZER)

    def modules(self) -> list[tuple[str, Any]]:
        """(name, module) of the namespace's modules (not ``_``-names), as of the last `refresh`."""
        return self._of_kind(_MODULE)

    def _of_kind(self, kind: int) -> list[tuple[str, Any]]:
        return [(self._keys[i], self._values[i]) for i in sorted(self._kinds) if self._kinds[i] == kind]

    def freeze(self) -> None:
        """No user code runs any more (the cell ended): the next use refreshes, later ones
        need not."""
        self._last_refresh = True

    def close(self) -> None:
        self._keys, self._values, self._parts, self._live, self._kinds, self._owner = [], [], {}, set(), {}, {}
        self._size, self._last_key = 0, None
        self._plain, self._shadowed, self._structures = set(), set(), {}
        self._kinds_read, self._watched, self._watched_at = b"", None, {}
        self.names, self.unregistered, self.user_attributes = {}, {}, {}
        self._unread = None
        self._frozen = True


def _containers_to_read(values: list[Any], kinds: bytes) -> set[int]:
    """The positions of the small lists, tuples and dicts among ``values`` (``kinds``: their
    `_kinds`) that hold something besides numbers, strings and the like (``_INERT_TYPES``):
    the only containers that can name a tensor. Found at C speed, without a Python call per
    container."""
    found: set[int] = set()
    small = (64).__ge__  # larger containers are not looked into at all (see `Namer._add`)
    for kind, items_of in ((_SEQUENCE, None), (_DICT, dict.values)):
        if kind not in kinds:
            continue
        positions = _positions(kinds, kind)
        containers = _pick(values, positions)  # (only those: each value looked at costs a cache miss)
        kept = None
        if max(map(len, containers)) > 64:
            kept = list(map(small, map(len, containers)))
            containers = list(compress(containers, kept))
        if _INERT_TYPES.issuperset(map(type, _items(containers, items_of))):
            continue  # (the usual case: one pass over the items)
        if kept is not None:
            positions = list(compress(positions, kept))
        ends = list(accumulate(map(len, containers)))
        items = _items(containers, items_of)
        for flat in compress(count(), map(not_, map(_INERT_TYPES.__contains__, map(type, items)))):
            found.add(positions[bisect_right(ends, flat)])
    return found


def _position(ns: dict[str, Any], name: str) -> int:
    """Where ``name`` is in ``ns`` (it is): looked for among the first and the newest
    entries, where IPython's and a cell's own names usually are, then in all."""
    first = list(islice(ns, 256))
    if name in first:
        return first.index(name)
    newest = list(islice(reversed(ns), 256))
    if name in newest:
        return len(ns) - 1 - newest.index(name)
    return list(ns).index(name)


def _pick(items: list[Any] | dict[int, Any], positions: list[int]) -> tuple[Any, ...]:
    """``items`` at ``positions``, in one call."""
    if len(positions) > 1:
        return itemgetter(*positions)(items)
    return (items[positions[0]],) if positions else ()


def _items(containers: Sequence[Any], items_of: Callable[[Any], Any] | None) -> Iterator[Any]:
    return chain.from_iterable(map(items_of, containers) if items_of is not None else containers)


# An entry's kind by the exact type of its value, one byte (_OTHER: any other type, read one by
# one; _CODE: functions and classes, which name nothing but can assign globals).
_OTHER, _INERT, _SEQUENCE, _DICT, _PLAIN_TENSOR, _CODE = 0, 1, 2, 3, 4, 5
_KIND_OF_TYPE: dict[type, int] = {**dict.fromkeys(_INERT_TYPES, _INERT), list: _SEQUENCE, tuple: _SEQUENCE,
                                  dict: _DICT, FunctionType: _CODE, type: _CODE}
# per kind, a `bytes.translate` table: a kind string to 1 where it is that kind, else 0 (a
# selector for `compress`)
_SELECTORS = {kind: bytes(int(code == kind) for code in range(256)) for kind in range(6)}

_MISSING: Final = object()
_WORD = re.compile(r"[^\W\d]\w*")  # an identifier (or a word of a string or comment)
# names that let code rebind any global: a cell or function using one is compared in full
_REBINDS_ANY = frozenset({"globals", "vars", "locals", "exec", "eval", "execfile", "get_ipython", "__main__",
                          "__name__", "__builtins__", "del"})
_REBINDS_ANY_FROM_A_FUNCTION = frozenset({"globals", "exec", "eval", "execfile", "get_ipython", "__main__"})
_STAR_IMPORT = re.compile(r"\bimport\s*\*")
_ASSIGN_GLOBAL = (opmap["STORE_GLOBAL"], opmap["DELETE_GLOBAL"])
_MAX_FUNCTIONS = 2_048  # more functions and classes in the notebook than this: compare in full


def _globals_assigned(functions: list[Any], ns: dict[str, Any]) -> set[str] | None:
    """The names that the notebook's functions and its classes' methods (those of ``ns``) may
    assign as globals: all the names of those that assign one; None: one can assign any."""
    codes: list[CodeType] = []
    for value in functions:
        if type(value) is FunctionType:
            if value.__globals__ is ns:
                codes.append(value.__code__)
        elif isinstance(value, type) and value.__module__ == ns.get("__name__"):
            for item in list(vars(value).values()):
                if isinstance(item, (staticmethod, classmethod)):
                    item = item.__func__
                accessors = (item.fget, item.fset, item.fdel) if isinstance(item, property) else (item,)
                codes.extend(f.__code__ for f in accessors
                             if type(f) is FunctionType and f.__globals__ is ns)
        if len(codes) > _MAX_FUNCTIONS:
            return None
    assigned: set[str] = set()
    while codes:
        code = codes.pop()
        names = code.co_names
        if not _REBINDS_ANY_FROM_A_FUNCTION.isdisjoint(names):
            return None
        operations = code.co_code[::2]  # (two bytes an instruction: the operation, its argument)
        if any(op in operations for op in _ASSIGN_GLOBAL):
            assigned.update(names)
        codes.extend(c for c in code.co_consts if type(c) is CodeType)
    return assigned


def _kinds(values: list[Any]) -> bytes:
    return bytes(list(map(_KIND_OF_TYPE.get, map(type, values), repeat(_OTHER))))


def _positions(kinds: bytes, kind: int) -> list[int]:
    """Where ``kinds`` holds ``kind``: at C speed, one search each when they are few."""
    if kinds.count(kind) * 16 < len(kinds):
        return list(_found(kinds, kind))
    return list(compress(range(len(kinds)), kinds.translate(_SELECTORS[kind])))


def _found(data: bytes, byte: int) -> Iterator[int]:
    """The positions of ``byte`` in ``data`` (a few: one search each)."""
    i = data.find(byte)
    while i >= 0:
        yield i
        i = data.find(byte, i + 1)


def _structure(value: Any, torch: Any) -> tuple[Any, ...] | None:
    """What the names of a module, or of a user object holding modules, depend on that can
    change without a rebinding, by name and identity at C speed: for each module under it, its
    attributes, and the keys and items of its plain lists, tuples and dicts (its parameters,
    buffers and submodules among them: ``model.fc = nn.Linear(...)``, ``self.hids.append(...)``);
    for a user object, its first 64 attributes and the modules among them. Equal structures,
    the same names (items of a list inside such a list are not looked at). None: no summary (a
    container of tensors is small: read again)."""
    try:
        if isinstance(value, torch.nn.Module):
            return _module_structure(value)
        if isinstance(value, (list, tuple, dict)):
            return None
        attributes = getattr(value, "__dict__", None)
        if type(attributes) is not dict:
            return None
        items = list(attributes.items())[:64]
        module = torch.nn.Module
        return (tuple(k for k, _ in items), tuple(id(v) for _, v in items),
                tuple(_module_structure(v) for _, v in items if isinstance(v, module)))
    except Exception:
        return None


_PLAIN_CONTAINERS = frozenset({list, tuple, dict})


class _Same:
    """Objects compared by identity, in order: equal to another `_Same` of the same objects (no
    `__eq__` of theirs is called: a tensor's compares element by element)."""

    __slots__ = ("objects",)

    def __init__(self, objects: list[Any]) -> None:
        self.objects = objects

    def __eq__(self, other: object) -> bool:
        return type(other) is _Same and len(self.objects) == len(other.objects) \
            and all(map(is_, self.objects, other.objects))

    __hash__ = None  # type: ignore[assignment]


def submodules(root: Any) -> list[Any]:
    """``root`` and every module under it, parents first, as registered: read from the
    registries directly (no names made, as torch's generators make them for each of 5,000
    layers); a module registered twice is listed twice, an empty registration as None."""
    modules = [root]
    for m in modules:  # (grows as it goes)
        if m is not None:
            modules.extend(m.__dict__["_modules"].values())
    return modules


def _module_structure(root: Any) -> tuple[Any, ...]:
    # Every module under ``root`` (parents first), then what their attribute dicts and plain
    # containers hold, flattened at C speed by the collector's own listing of what a dict, list
    # or tuple refers to, with the lengths that tell where each part ends. A Python call per
    # module, not a dozen: 5,000 modules compared in about 15 ms instead of 50 ms (a model is
    # compared at each traced backward). The objects are held while the index lives, as the
    # entries' values are.
    dicts = [m.__dict__ for m in submodules(root) if m is not None]
    values = gc.get_referents(*dicts)  # (their values, in order; a dict of str keys lists no key)
    containers = list(compress(values, map(_PLAIN_CONTAINERS.__contains__, map(type, values))))
    lengths = list(map(len, containers))
    if lengths and max(lengths) > 256:
        # a long list of the user's (losses) is not looked into by `Namer._add_contained`: its
        # length only (a module's own registries are looked into, however long)
        registries = {id(d[k]) for d in dicts for k in ("_modules", "_parameters", "_buffers") if k in d}
        long = [n > 256 and id(c) not in registries for c, n in zip(containers, lengths, strict=True)]
        containers = [() if is_long else c for c, is_long in zip(containers, long, strict=True)]
        lengths = [-n if is_long else n for n, is_long in zip(lengths, long, strict=True)]
    return (tuple(map(len, dicts)), tuple(chain.from_iterable(dicts)), _Same(values), tuple(lengths),
            tuple(chain.from_iterable(c for c in containers if type(c) is dict)), _Same(gc.get_referents(*containers)))


def _plain_tensor_types(torch: Any) -> None:
    _KIND_OF_TYPE.setdefault(torch.Tensor, _PLAIN_TENSOR)
    _KIND_OF_TYPE.setdefault(torch.nn.Parameter, _PLAIN_TENSOR)


def _plain_part(tensor: Any, name: str) -> _Part:
    return (((tensor,), (name,)), (), (), False, 0)


def _same(a: _Part | None, b: _Part | None) -> bool:
    if a is None or b is None:
        return a is b
    (a_objects, a_names), (b_objects, b_names) = a[_NAMES], b[_NAMES]
    return a_names == b_names and a[_UNREGISTERED] == b[_UNREGISTERED] \
        and a[_USER_ATTRIBUTES] == b[_USER_ATTRIBUTES] and a[_KIND] == b[_KIND] \
        and all(map(is_, a_objects, b_objects))


def _hidden(var: str) -> bool:
    """An entry that names nothing (``_x``, IPython's ``In``/``Out``)."""
    return var.startswith("_") or var in ("In", "Out")


def _kind(var: str, value: Any, torch: Any) -> int:
    """The entry's kind as `_entry` gives it (without naming what it holds): _OPTIMIZER (also
    under a hidden name: adopted by the session, not named), _MODULE (not hidden) or 0."""
    if isinstance(value, torch.optim.Optimizer):
        return _OPTIMIZER
    return _MODULE if isinstance(value, torch.nn.Module) and not _hidden(var) else 0


def _entry(var: str, value: Any, torch: Any) -> _Part | None:
    """What the namespace entry ``var`` names (None: nothing)."""
    if _hidden(var):
        if isinstance(value, torch.optim.Optimizer):  # adopted by the session, not named
            return (((), ()), (), (), False, _OPTIMIZER)
        return None
    cls = type(value)
    if cls is list or cls is tuple or cls is dict:  # `xs[0]`, `batch['x']`, as `Namer._add_items`
        items = value.values() if cls is dict else value
        if len(value) > 64 or _INERT_TYPES.issuperset(map(type, items)):
            return None  # (most containers hold numbers and strings only)
        tensor = torch.Tensor
        pairs = value.items() if cls is dict else enumerate(value)
        seen: set[int] = set()
        named = [(item, f"{var}[{k!r}]" if cls is dict else f"{var}[{k}]") for k, item in pairs
                 if isinstance(item, tensor) and not (id(item) in seen or seen.add(id(item)))]
        return ((tuple(o for o, _ in named), tuple(n for _, n in named)), (), (), cls is not tuple, 0) \
            if named else None
    if isinstance(value, torch.Tensor):
        return (((value,), (var,)), (), (), False, 0)
    namer = Namer()
    namer._add(var, value, torch)
    if not namer._by_id:
        return None
    kind = _kind(var, value, torch)
    objects = namer._objects
    return ((tuple(map(objects.__getitem__, namer._by_id)), tuple(namer._by_id.values())),
            tuple(namer._unregistered.items()), tuple(namer._user_attribute.items()), kind != _OPTIMIZER, kind)


class Namer:
    """Finds the user's own name for a tensor, module or optimizer, by identity.

    Built from namespaces (the frame that called ``backward()``, the notebook's globals) when a
    diagnostic needs a name; holds the objects only while it lives. ``index``: the notebook
    namespace's `NamespaceIndex`, used for that namespace when it comes first.
    """

    def __init__(self, *namespaces: dict[str, Any], index: NamespaceIndex | None = None) -> None:
        # A namespace given twice (a cell's frame: its locals are its globals, the notebook's
        # namespace) is read once. Nothing is read until a name is asked for.
        unique: dict[int, dict[str, Any]] = {}
        for ns in namespaces:
            unique.setdefault(id(ns), ns)
        self._index = index if index is not None and namespaces and namespaces[0] is index.namespace else None
        self._base: dict[int, str] = {}  # the index's names (first), then `_by_id`
        self._namespaces: list[dict[str, Any]] | None = list(unique.values())
        self._pending: list[tuple[Any, str]] = []  # optimizers whose parameters get names
        self._tensor_type: type | tuple[type, ...] = ()  # (torch.Tensor, once optimizers are added)
        self._by_id: dict[int, str] = {}
        self._objects: dict[int, Any] = {}  # keeps ids stable while the Namer lives
        self._unregistered: dict[int, str] = {}  # tensor id -> the plain container attribute
        self._user_attribute: dict[int, str] = {}  # parameter id -> `mask` of `self.mask = ...`

    @property
    def _names(self) -> dict[int, str]:
        own = self._read_all()
        return {**self._base, **own} if self._base else own

    def _read_all(self) -> dict[int, str]:
        """Object id -> name: the namespaces read in order (the first name wins), then the
        parameters of the optimizers added so far."""
        self._read()
        if self._pending:
            self._add_pending()
        return self._by_id

    def _read(self) -> dict[int, str]:
        """Object id -> name: the namespaces read in order (the first name wins); the optimizers'
        parameters are named only when a tensor is not found there (`name`, `_read_all`)."""
        namespaces, self._namespaces = self._namespaces, None
        if namespaces is not None:
            import torch

            index = self._index
            if index is not None:
                index.refresh()
                self._base = index.names
                self._unregistered.update(index.unregistered)
                self._user_attribute.update(index.user_attributes)
                namespaces = namespaces[1:]
            inert = _INERT_TYPES
            for ns in namespaces:
                for var, value in list(ns.items()):
                    if type(value) in inert or _hidden(var):
                        continue
                    self._add(var, value, torch)
        return self._by_id

    def _add_pending(self) -> None:
        """The parameters of the optimizers added so far, named after them in the order they
        were added (inline: a traced backward with 1,000 optimizers names them all)."""
        pending, self._pending = self._pending, []
        base, by_id, objects = self._base, self._by_id, self._objects
        for opt, fallback in pending:
            opt_name = base.get(id(opt)) or by_id.get(id(opt)) or fallback
            for g, group in enumerate(opt.param_groups):
                prefix = f"{opt_name}.param_groups[{g}]['params']["
                for i, p in enumerate(group["params"]):
                    key = id(p)
                    if key not in by_id and key not in base:
                        by_id[key] = f"{prefix}{i}]"
                        objects[key] = p

    def _put(self, obj: Any, name: str) -> None:
        if id(obj) not in self._by_id and id(obj) not in self._base:
            self._by_id[id(obj)] = name
            self._objects[id(obj)] = obj

    def _add(self, var: str, value: Any, torch: Any, depth: int = 0) -> None:
        cls = type(value)
        if cls is list or cls is tuple or cls is dict:  # the common containers, without the checks below
            if len(value) <= 64:
                self._add_items(var, value, torch)
            return
        if isinstance(value, torch.Tensor):
            self._put(value, var)
        elif isinstance(value, torch.nn.Module):
            self._put(value, var)
            try:
                self._add_module(var, value, torch)
            except Exception:
                pass
        elif isinstance(value, torch.optim.Optimizer):
            self._put(value, var)
        elif depth == 0 and hasattr(value, "__dict__") and not isinstance(value, type) \
                and type(value).__module__ not in ("builtins", "types"):
            # a user object holding the model (`trainer.model`, `self.optimizer`): one level deep
            for attr, item in list(vars(value).items())[:64]:
                if not attr.startswith("_") and isinstance(item, (torch.nn.Module, torch.optim.Optimizer)):
                    self._add(f"{var}.{attr}", item, torch, depth=1)
        elif isinstance(value, (list, tuple, dict)) and len(value) <= 64:
            self._add_items(var, value, torch)

    def _add_module(self, var: str, value: Any, torch: Any) -> None:
        """A module's parameters (``named_parameters()``'s names, first), then its submodules,
        their plain tensor attributes, buffers and the modules in their plain containers. The
        modules are listed once and read through their registries (a model of 5,000 modules:
        a generator of torch's per module and per kind was most of the cost)."""
        modules = [(f"{var}.{mname}" if mname else var, m) for mname, m in value.named_modules()]
        registries = [m.__dict__ for _, m in modules]
        by_id, objects, base = self._by_id, self._objects, self._base
        for (prefix, _), registry in zip(modules, registries, strict=True):  # (`_put`, inline)
            for pname, p in registry["_parameters"].items():
                if p is not None and id(p) not in by_id and id(p) not in base:
                    by_id[id(p)] = f"{prefix}.{pname}"
                    objects[id(p)] = p
        tensor, containers = torch.Tensor, (list, tuple, dict)
        # attribute names -> those without `_` (the modules of a class share them)
        public: dict[tuple[str, ...], list[str]] = {}
        for (prefix, m), attributes in zip(modules, registries, strict=True):
            if m is not value:
                self._put(m, prefix)
            names = tuple(attributes)
            shown = public.get(names)
            if shown is None:
                shown = public[names] = [attr for attr in names if not attr.startswith("_")]
            held = [(attr, attributes[attr]) for attr in shown]
            for attr, item in held:  # plain tensor attributes
                if isinstance(item, tensor):
                    self._put(item, f"{prefix}.{attr}")
            for bname, buf in attributes["_buffers"].items():
                if buf is not None:
                    self._put(buf, f"{prefix}.{bname}")
            if not type(m).__module__.startswith("torch."):  # a user's own module class
                for pname, p in attributes["_parameters"].items():
                    if p is not None:
                        self._user_attribute.setdefault(id(p), pname)
            for attr, item in held:  # modules kept in plain lists/dicts are not registered: named
                if isinstance(item, containers):  # through the container (and it is remembered)
                    self._add_contained(item, f"{prefix}.{attr}", f"{prefix}.{attr}", torch, 0)

    def _add_items(self, var: str, value: Any, torch: Any) -> None:
        """The tensors in a small list, tuple or dict: ``xs[0]``, ``batch['x']``."""
        tensor = torch.Tensor
        if isinstance(value, dict):
            for k, item in value.items():
                if isinstance(item, tensor):
                    self._put(item, f"{var}[{k!r}]")
        else:
            for i, item in enumerate(value):
                if isinstance(item, tensor):
                    self._put(item, f"{var}[{i}]")

    def _add_contained(self, value: Any, path: str, container: str, torch: Any, depth: int) -> None:
        if len(value) > 256 or depth > 1:
            return
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(item, torch.nn.Module):
                for pname, p in item.named_parameters():
                    self._put(p, f"{path}[{key!r}].{pname}")
                    self._unregistered.setdefault(id(p), container)
            elif isinstance(item, (list, tuple, dict)):  # `self.hids.append([linear, act])`
                self._add_contained(item, f"{path}[{key!r}]", container, torch, depth + 1)

    def user_attribute(self, obj: Any) -> str | None:
        """The attribute a user's own module class assigned this parameter to."""
        self._read()
        return self._user_attribute.get(id(obj))

    def unregistered_in(self, obj: Any) -> str | None:
        self._read()
        return self._unregistered.get(id(obj))

    def bound_name(self, obj: Any) -> str | None:
        """`name`, found without reading what the namespaces' models and containers hold when
        a variable holds ``obj`` itself (a loss): the notebook's bindings, then the frame's."""
        namespaces = self._namespaces
        if namespaces is None:
            return self.name(obj)  # (read already)
        index = self._index
        found = None
        if index is not None:
            index.refresh(contents=False)
            found = index.names.get(id(obj))
            namespaces = namespaces[1:]
        for ns in namespaces:
            if found is not None or len(ns) > 1024:  # (a module's globals: read in full)
                break
            found = next((var for var, value in ns.items() if value is obj and not _hidden(var)), None)
        return found if found is not None else self.name(obj)

    def optimizer_name(self, opt: Any) -> str | None:
        """The notebook variable bound to ``opt`` itself (the first one not hidden), found
        without reading what the notebook's models and containers hold; else `name`
        (``trainer.opt``, ``opts[0]``). An optimizer is called by its own variable even where
        a container made before it holds it too."""
        index = self._index
        if index is not None:
            index.refresh(contents=False)
            found = next((var for var, value in index.optimizers() if value is opt and not _hidden(var)), None)
            if found is not None:
                return found
        return self.name(opt)

    def name(self, obj: Any) -> str | None:
        if self._namespaces is not None:
            self._read()
        key = id(obj)
        found = self._base.get(key) or self._by_id.get(key)
        if found is None and self._pending and isinstance(obj, self._tensor_type):
            # (an optimizer's name is the namespaces' or none: naming 1,000 optimizers after
            # the cell names none of their parameters)
            self._add_pending()
            found = self._by_id.get(key)
        return found

    def add_optimizer(self, opt: Any, fallback: str) -> None:
        """Name ``opt``'s parameters after it (``opt.param_groups[0]['params'][3]``), by its
        name in the namespaces, else ``fallback``; done when a tensor's name is first asked
        for and not found in the namespaces."""
        self.add_optimizers([(opt, fallback)])

    def add_optimizers(self, optimizers: list[tuple[Any, str]]) -> None:
        """`add_optimizer` for each (optimizer, fallback), in order (one call for 1,000)."""
        if self._tensor_type == ():
            import torch

            self._tensor_type = torch.Tensor
        self._pending += optimizers

    def add_optimizer_params(self, opt: Any, opt_name: str) -> None:
        self._read_all()  # the namespaces' names come first, then those of the optimizers added before
        self._add_params(opt, opt_name)

    def _add_params(self, opt: Any, opt_name: str) -> None:
        for g, group in enumerate(opt.param_groups):
            for i, p in enumerate(group["params"]):
                self._put(p, f"{opt_name}.param_groups[{g}]['params'][{i}]")
