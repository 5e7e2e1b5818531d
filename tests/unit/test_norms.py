"""`monitors.norms`: the norms of many small CPU tensors by shape group are `_foreach_norm`'s."""

from __future__ import annotations

import pytest
import torch

from gradwatch.monitors.norms import ShapeGroups

_INF = float("inf")


def _mixed() -> list[torch.Tensor]:
    torch.manual_seed(0)
    # two shapes shared by many small tensors, a few odd ones, one above the stacked size
    tensors = [torch.randn(16, 8) if i % 3 else torch.randn(8) for i in range(60)]
    tensors[10:10] = [torch.randn(5), torch.randn(70, 70), torch.randn(2, 2, 2)]
    with torch.no_grad():
        tensors[4].zero_()
        tensors[7][0, 1] = float("nan")
        tensors[20][-1] = -_INF
    return tensors


@pytest.mark.parametrize("ord_, dtype", [(2, torch.float32), (_INF, None)])
def test_the_norms_are_foreach_norms_in_the_tensors_order(ord_, dtype):
    tensors = _mixed()
    expected = torch.stack(torch._foreach_norm(tensors, ord_, dtype=dtype))
    plan = ShapeGroups.plan(tensors)
    assert plan is not None and len(plan.groups) == 2 and sorted(plan.rest) == [10, 11, 12]
    got = plan.norms(tensors, ord_, dtype)
    assert got.shape == (63,)
    assert torch.allclose(got, expected, equal_nan=True)
    assert got[4].item() == 0.0 and got[7].isnan() and got[20].isinf()
    assert got.isfinite().tolist() == expected.isfinite().tolist()


def test_a_missing_tensor_raises_type_error_as_foreach_norm_does():
    tensors: list = _mixed()
    plan = ShapeGroups.plan(tensors)
    assert plan is not None
    tensors[5] = None
    with pytest.raises(TypeError):
        plan.norms(tensors, 2)


def test_no_plan_where_stacking_gains_nothing():
    assert ShapeGroups.plan([torch.randn(8) for _ in range(15)]) is None  # few tensors
    assert ShapeGroups.plan([torch.randn(i + 1) for i in range(40)]) is None  # no shared shape
    assert ShapeGroups.plan([torch.randn(5000) for _ in range(40)]) is None  # all too big to copy
    assert ShapeGroups.plan([torch.randn(8).to_sparse() for _ in range(40)]) is None
