"""Compute kernels: `reference` (float64 NumPy oracle) and `cpu` (Numba); import them explicitly."""
