"""The rules: one module per rule (``gwNNN_<name>.py``), found by `registry`."""
