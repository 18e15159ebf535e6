"""The kernel layer: the compute. The cell math written once (`cells`), the float64 NumPy oracle
(`reference`), sampling (`sampling`), the numba wrapper and its cache (`jit`, `cache`), and two
backends with one API: `cpu` (Numba on NumPy arrays) and `cuda` (numba.cuda on device arrays).
`device` picks one.

Imports: rnncli.base only."""
