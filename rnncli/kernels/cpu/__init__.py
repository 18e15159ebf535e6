"""The CPU backend (`backend`: Numba on NumPy arrays) and what only it needs: the per-step drivers
(`steps`), generation (`decode`), the products (`gemm`, `blas`) and their measured choice (`tune`).
Importing this package imports nothing heavy; `backend` loads numba."""
