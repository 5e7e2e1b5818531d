"""Norms of many tensors at once, one value each.

``torch._foreach_norm`` is one fused kernel on a GPU, but on the CPU it loops over its tensors,
one kernel each, a few microseconds apiece: a model of 10,000 small layers paid more for the norms
of its gradients (and for the non-finite checks of its traced ops) than for its own step. Small CPU
tensors of one shape are stacked instead and reduced along one dimension: one kernel per shape.
Tensors above `SMALL_NUMEL` elements keep ``_foreach_norm`` (stacking would copy them), and so does
everything off the CPU.
"""

from __future__ import annotations

from typing import Any

import torch

SMALL_NUMEL = 4096
_MIN_TENSORS = 16  # fewer: `_foreach_norm` as it is
_MIN_GROUP = 8  # tensors of one shape stacked at least (a stack, a norm and a copy per group)


def shape_groups(tensors: list[torch.Tensor]) -> tuple[list[list[int]], list[int]] | None:
    """The positions of the small CPU tensors that share a shape and dtype, group by group, and
    the positions of the rest; None when that gains nothing: few tensors, a tensor off the CPU
    or not strided, no shape shared by several small tensors."""
    if len(tensors) < _MIN_TENSORS:
        return None
    by_shape: dict[tuple, list[int]] = {}
    rest: list[int] = []
    strided = torch.strided
    for i, t in enumerate(tensors):
        if not t.is_cpu or t.layout != strided:
            return None
        n = t.numel()
        if n > SMALL_NUMEL or n == 0:
            rest.append(i)
        else:
            key = (t.shape, t.dtype)
            group = by_shape.get(key)
            if group is None:
                by_shape[key] = [i]
            else:
                group.append(i)
    groups = [idx for idx in by_shape.values() if len(idx) >= _MIN_GROUP]
    if not groups:
        return None
    if len(groups) < len(by_shape):
        rest += [i for idx in by_shape.values() if len(idx) < _MIN_GROUP for i in idx]
    return groups, rest


def grouped_norms(tensors: list[Any], groups: list[list[int]], rest: list[int], ord: float,
                  dtype: torch.dtype | None = None) -> list[tuple[list[int], torch.Tensor]]:
    """(positions, their ``ord``-norms as a 1-D tensor) for the rest and for each group; NaN and
    Inf as ``_foreach_norm`` gives them, and a None among the tensors raises TypeError as it does."""
    out = []
    if rest:
        out.append((rest, torch.stack(torch._foreach_norm([tensors[i] for i in rest], ord, dtype=dtype))))  # pyright: ignore[reportPrivateImportUsage, reportArgumentType, reportCallIssue]
    for idx in groups:
        stacked = torch.stack([tensors[i] for i in idx])
        out.append((idx, torch.linalg.vector_norm(stacked.reshape(len(idx), -1), ord, dim=1, dtype=dtype)))
    return out


class ShapeGroups:
    """`shape_groups` of a list whose shapes stay (an optimizer's parameters), made once: each
    call gives the norms in the list's order with one index."""

    __slots__ = ("groups", "rest", "order")

    def __init__(self, groups: list[list[int]], rest: list[int], order: torch.Tensor) -> None:
        self.groups, self.rest, self.order = groups, rest, order

    @staticmethod
    def plan(tensors: list[torch.Tensor]) -> ShapeGroups | None:
        found = shape_groups(tensors)
        if found is None:
            return None
        groups, rest = found
        placed = rest + [i for idx in groups for i in idx]  # the order the norms come out in
        order = torch.empty(len(placed), dtype=torch.long)
        order[torch.tensor(placed, dtype=torch.long)] = torch.arange(len(placed))
        return ShapeGroups(groups, rest, order)

    def norms(self, tensors: list[Any], ord: float, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The ``ord``-norm of each tensor, in their order."""
        parts = [norms for _, norms in grouped_norms(tensors, self.groups, self.rest, ord, dtype)]
        return torch.cat(parts)[self.order]
