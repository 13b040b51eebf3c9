"""The training lab: the run form, the job runner, the run store, A/B, depth sweeps, precompute."""
