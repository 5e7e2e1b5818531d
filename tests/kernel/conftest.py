"""Fixtures shared by the kernel tests."""

from __future__ import annotations

import pytest

import harness


@pytest.fixture(scope="module")
def kernel():
    """One real kernel with gradwatch loaded, shared by a test module's tests."""
    with harness.KernelSession() as session:
        yield session
