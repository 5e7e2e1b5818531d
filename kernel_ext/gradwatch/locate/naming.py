"""The user's own names for tensors, modules and optimizers (``w``, ``model.fc1.weight``), found
by identity in the namespaces a diagnostic needs, on demand."""

from __future__ import annotations

from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType
from typing import Any


# Values that never name a tensor, module or optimizer: skipped by their exact type, without
# the checks `Namer._add` makes (a namespace of 100,000 numbers is read in milliseconds).
_INERT_TYPES = frozenset({int, float, complex, bool, str, bytes, type(None), type, FunctionType,
                          BuiltinFunctionType, MethodType, ModuleType})


class Namer:
    """Finds the user's own name for a tensor, module or optimizer, by identity.

    Built from namespaces (the frame that called ``backward()``, the notebook's globals) when a
    diagnostic needs a name; holds the objects only while it lives.
    """

    def __init__(self, *namespaces: dict[str, Any]) -> None:
        # A namespace given twice (a cell's frame: its locals are its globals, the notebook's
        # namespace) is read once. Nothing is read until a name is asked for.
        unique: dict[int, dict[str, Any]] = {}
        for ns in namespaces:
            unique.setdefault(id(ns), ns)
        self._namespaces: list[dict[str, Any]] | None = list(unique.values())
        self._pending: list[tuple[Any, str]] = []  # optimizers whose parameters get names
        self._by_id: dict[int, str] = {}
        self._objects: dict[int, Any] = {}  # keeps ids stable while the Namer lives
        self._unregistered: dict[int, str] = {}  # tensor id -> the plain container attribute
        self._user_attribute: dict[int, str] = {}  # parameter id -> `mask` of `self.mask = ...`

    @property
    def _names(self) -> dict[int, str]:
        return self._read()

    def _read(self) -> dict[int, str]:
        """Object id -> name: the namespaces read in order (the first name wins), then the
        parameters of the optimizers added so far."""
        namespaces, self._namespaces = self._namespaces, None
        if namespaces is not None:
            import torch

            inert = _INERT_TYPES
            for ns in namespaces:
                for var, value in list(ns.items()):
                    if type(value) in inert or var.startswith("_") or var in ("In", "Out"):
                        continue
                    self._add(var, value, torch)
        while self._pending:
            opt, fallback = self._pending.pop(0)
            self._add_params(opt, self._by_id.get(id(opt)) or fallback)
        return self._by_id

    def _put(self, obj: Any, name: str) -> None:
        if id(obj) not in self._by_id:
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
                for pname, p in value.named_parameters(remove_duplicate=True):
                    self._put(p, f"{var}.{pname}")
                for mname, m in value.named_modules():
                    prefix = f"{var}.{mname}" if mname else var
                    if mname:
                        self._put(m, prefix)
                    for attr, item in list(vars(m).items()):  # plain tensor attributes, buffers
                        if isinstance(item, torch.Tensor) and not attr.startswith("_"):
                            self._put(item, f"{prefix}.{attr}")
                    for bname, buf in m.named_buffers(recurse=False):
                        self._put(buf, f"{prefix}.{bname}")
                    if not type(m).__module__.startswith("torch."):  # a user's own module class
                        for pname, p in m.named_parameters(recurse=False):
                            self._user_attribute.setdefault(id(p), pname)
                    self._add_unregistered(m, prefix, torch)
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

    def _add_unregistered(self, module: Any, prefix: str, torch: Any) -> None:
        """Modules kept in a plain list/dict attribute (``self.hids = []``) are not registered:
        ``parameters()`` leaves them out. Name their parameters and remember the container."""
        for attr, value in list(vars(module).items()):
            if not attr.startswith("_") and isinstance(value, (list, tuple, dict)):
                self._add_contained(value, f"{prefix}.{attr}", f"{prefix}.{attr}", torch, 0)

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

    def name(self, obj: Any) -> str | None:
        return self._read().get(id(obj))

    def add_optimizer(self, opt: Any, fallback: str) -> None:
        """Name ``opt``'s parameters after it (``opt.param_groups[0]['params'][3]``), by its
        name in the namespaces, else ``fallback``; done when a name is first asked for."""
        self._pending.append((opt, fallback))

    def add_optimizer_params(self, opt: Any, opt_name: str) -> None:
        self._read()  # the namespaces' names come first
        self._add_params(opt, opt_name)

    def _add_params(self, opt: Any, opt_name: str) -> None:
        for g, group in enumerate(opt.param_groups):
            for i, p in enumerate(group["params"]):
                self._put(p, f"{opt_name}.param_groups[{g}]['params'][{i}]")
