"""Shared pytest setup: the kernel harness on sys.path, and the fixture-corpus runner.

The corpus (tests/fixtures/programs/*/*.py) runs once per session, in parallel fresh kernels
(``GRADWATCH_TEST_WORKERS``, default min(4, cores + 1)), and only for the corpus tests that were
selected; each ``test_corpus`` item then checks its own fixture's result.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

KERNEL_TESTS = Path(__file__).resolve().parent / "kernel"
if str(KERNEL_TESTS) not in sys.path:
    sys.path.insert(0, str(KERNEL_TESTS))

_SELECTED_FIXTURES: list[str] = []
_SELECTED_PLAIN: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kernel: runs code in a real Jupyter kernel (slow)")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Remember the corpus items that will run (after -k/-m deselection)."""
    items = session.items
    _SELECTED_FIXTURES.clear()
    _SELECTED_PLAIN.clear()
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "fixture_path" in callspec.params \
                and item.module.__name__.endswith("test_corpus"):
            _SELECTED_FIXTURES.append(str(callspec.params["fixture_path"]))
            if item.originalname == "test_same_behaviour_without_gradwatch":
                _SELECTED_PLAIN.append(str(callspec.params["fixture_path"]))


@pytest.fixture(scope="session")
def corpus_results():
    """fixture id -> FixtureResult (or the exception that running it raised)."""
    import harness

    fixtures = [harness.parse_fixture(Path(p)) for p in dict.fromkeys(_SELECTED_FIXTURES)]
    return harness.run_fixtures(fixtures)


@pytest.fixture(scope="session")
def unwatched_results():
    """fixture id -> the result of the same program without %%gradwatch (for the selected
    ``test_same_behaviour_without_gradwatch`` items)."""
    import harness

    fixtures = [harness.unwatched(harness.parse_fixture(Path(p))) for p in dict.fromkeys(_SELECTED_PLAIN)]
    return harness.run_fixtures(fixtures)
