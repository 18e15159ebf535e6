"""The decoder's products by weights of any format (kernels/formats.py: f32, bf16, int8 with a scale per
row): C = (A @ widen(W).T) * scale, W (N, K') in the dot-product layout (rows = outputs, padded), each
weight widened to float32 in registers as it is read (gemm.widen). A narrow step reads 2x (bf16) or
~4x (int8) fewer bytes than float32, which is what bounds one stream's speed.

Several rows of A (batched generation, where the products are bound by arithmetic, not bytes) go
either through gemm.matmul_nt, generic in W's format (ROWS, ROWS4: each weight widened once per two
rows of A), or by BLAS or the row-building kernel on WT, the same weights widened to float32 once
when the decoder is laid out (decode.layout): at float32's speed, the outputs scaled after (int8).
(A block of W widened into a buffer for BLAS at every product ran batched generation at 2.4-3.1x
one stream's speed for the medium GRU and LSTM, against float32's 3.2-4.0x.) One row, the
streaming case, goes through tiles of one row against 4 rows of W, in the calling thread (ONE) or,
for large weights, shared among the kernel threads by outputs (SPREAD). float32 weights take any
of gemm's paths, as before; `scale` is empty for f32 and bf16.
"""

import numpy as np
from numba import prange

from rnncli.kernels.cpu.gemm import PATHS, _dot, product, widen
from rnncli.kernels.jit import kernel

# paths beyond gemm.PATHS for narrow weights: one row in this thread; one row, outputs shared by the
# threads
ONE, SPREAD = len(PATHS), len(PATHS) + 1


@kernel(reassociate=True)
def _tile1(A, W, j, C):
    """C[0, j:j+4] = A[0] . widen(W[j:j+4]), each dotted along the row."""
    s0 = s1 = s2 = s3 = np.float32(0.0)
    for k in range(A.shape[1]):
        a = A[0, k]
        s0 += a * widen(W[j, k])
        s1 += a * widen(W[j + 1, k])
        s2 += a * widen(W[j + 2, k])
        s3 += a * widen(W[j + 3, k])
    C[0, j], C[0, j + 1], C[0, j + 2], C[0, j + 3] = s0, s1, s2, s3


@kernel
def _scaled(C, scale):
    """Every output times its weight row's scale (nothing when scale is empty: f32, bf16)."""
    if scale.shape[0] > 0:
        for i in range(C.shape[0]):
            for j in range(C.shape[1]):
                C[i, j] *= scale[j]


@kernel
def _one(A, W, scale, C):
    """ONE: C (1, N) = (A (1, K) @ widen(W).T) * scale in this thread."""
    N = W.shape[0]
    for t in range(N // 4):
        _tile1(A, W, 4 * t, C)
    for j in range(N - N % 4, N):
        C[0, j] = _dot(A, 0, W, j)
    _scaled(C, scale)


@kernel(parallel=True)
def spread(A, W, scale, C):
    """SPREAD: _one with its tiles of 4 outputs shared among the kernel threads (independent outputs,
    each written by one thread)."""
    N = W.shape[0]
    for t in prange(N // 4):
        _tile1(A, W, 4 * t, C)
    for j in range(N - N % 4, N):
        C[0, j] = _dot(A, 0, W, j)
    _scaled(C, scale)


@kernel(inline=True)
def product_any(A, W, WT, scale, C, path):
    """C = (A @ widen(W).T) * scale by `path`: ONE or SPREAD for one row, else gemm.product's path
    (ROWS, ROWS4 widen W in registers; BLAS and COLS read WT: widen(W).T in float32)."""
    if path == SPREAD:
        spread(A, W, scale, C)
    elif path == ONE:
        _one(A, W, scale, C)
    else:
        product(A, W, WT, C, path)
        _scaled(C, scale)
