"""The GPU backend (`backend`: numba.cuda on device arrays, the same names and signatures as
kernels/cpu/backend.py): device arrays (`arrays`), products, loss and optimizer (`ops`), the recurrences
(`recur`) and generation (`decode`). Importing this package imports nothing heavy."""
