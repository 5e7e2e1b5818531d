"""Everything gradwatch puts into torch for a cell, and takes out again: one `Installer` (patches,
hooks, modes), the only calls to torch's private mode stack (`modes`), dynamo's compiled regions,
the optimizer table and the typed handle that monitors get instead of the session."""
