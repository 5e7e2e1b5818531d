"""A watch session around a function, for the in-process tests (not a test module)."""

from __future__ import annotations

import warnings

import gradwatch


def watched(fn, **options):
    """Run ``fn`` under ``gradwatch.watch`` (no Python warnings, an empty namespace); the report."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gradwatch.watch(warn=False, namespace={}, **options) as report:
            fn()
    return report
