"""Shared fixtures of the in-process tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def shell():
    """IPython's test shell with gradwatch loaded: cells run through IPython's own machinery.
    ``start_ipython`` makes the one global shell of the process (and returns None after that)."""
    from IPython.testing.globalipapp import get_ipython, start_ipython

    ip = start_ipython() or get_ipython()
    ip.run_line_magic("load_ext", "gradwatch")
    return ip
