"""Per-step monitors: what gradwatch measures on every training step (the order of
``backward()``/``step()``/``zero_grad()``, gradient norms and losses) and on the traced first
iterations (per-op checks). They emit typed measurements (``measurements.py``); rules judge them."""
