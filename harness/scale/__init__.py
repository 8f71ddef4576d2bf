"""Scaling out: sweeps (one after another or on Ray) and data-parallel runs (torchrun)."""
