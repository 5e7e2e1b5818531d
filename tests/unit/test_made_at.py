"""Provenance records. Where a parameter's storage was made (``nn.Parameter(torch.empty(...))``
hides the factory's tensor behind a new object on the same storage): the record is keyed by
storage address, and an address is reused once its storage is freed, so a stale record must not
name a new parameter's origin (it made GW007 point at an unrelated `torch.randn(...)` now and
then). And the last reads of a tensor, which explain an in-place version error. In-process."""

from __future__ import annotations

import gc
import weakref

import torch
from torch import nn

from gradwatch.trace.provenance import Provenance


def test_the_factory_of_a_parameters_storage_is_its_origin() -> None:
    prov = Provenance(lambda frame: None)
    made = torch.empty(4, 3)
    prov.made_at[made.untyped_storage().data_ptr()] = (("factory", 1), weakref.ref(made.untyped_storage()))
    param = nn.Parameter(made)
    del made
    gc.collect()
    assert prov.made_position(param) == ("factory", 1)


def test_a_record_of_a_freed_storage_at_the_same_address_is_not_a_new_parameters_origin() -> None:
    prov = Provenance(lambda frame: None)
    old = torch.empty(4, 3)
    old_address = old.untyped_storage().data_ptr()
    prov.made_at[old_address] = (("elsewhere", 7), weakref.ref(old.untyped_storage()))
    del old
    gc.collect()
    fresh = nn.Parameter(torch.empty(4, 3))  # made while nothing was traced
    # the allocator may hand the freed address to the new storage: the stale record then sits there
    prov.made_at[fresh.untyped_storage().data_ptr()] = prov.made_at.pop(old_address)
    assert prov.made_position(fresh) is None


def test_a_tensors_reads_are_its_last_eight_as_op_position_and_version() -> None:
    # kept flat in one tuple per tensor (op, position, version, op, ...), read back as triples:
    # the in-place explanation matches a saved version against them
    from gradwatch.trace.provenance import ProvenanceMode

    prov = Provenance(lambda frame: ("cell", 1))
    w = torch.ones(3, requires_grad=True)
    with ProvenanceMode(prov, on_error=lambda exc: None):
        for _ in range(9):
            (w * 2).sum()
        with torch.no_grad():
            w.add_(1)
        torch.sin(w)
    assert prov.uses_of(w) == (("mul", ("cell", 1), 0),) * 7 + (("sin", ("cell", 1), 1),)
    assert prov.uses_of(torch.ones(1)) == ()
