"""Compute kernels: `reference` (the float64 NumPy oracle), and two backends with one API, `cpu`
(Numba on NumPy arrays) and `cuda` (numba.cuda on device arrays); import them explicitly, or let
rnncli/device.py pick one."""
