"""Checkpoints scored: lm-eval on the benchmarks and the probes (its task YAMLs in tasks/),
bits per byte on the held-out slices, the surrogate's own reference lines."""
