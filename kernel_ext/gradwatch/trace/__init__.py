"""Structural tracing on the first iterations: where each tensor came from (provenance), which
parameters the loss reaches (flow), the facts behind a failing backward() (explain, cell_error)."""
