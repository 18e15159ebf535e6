"""The decoder's products by weights of any format (kernels/formats.py: f32, bf16, int8 with a scale per
row): C = (A @ widen(W).T) * scale, W (N, K') in the dot-product layout (rows = outputs, padded), each
weight widened to float32 in registers as it is read (gemm.widen). A narrow step reads 2x (bf16) or
~4x (int8) fewer bytes than float32, which is what bounds one stream's speed.

Several rows of A (batched generation, where the products are bound by arithmetic, not bytes) go
either through gemm.matmul_nt, generic in W's format (ROWS, ROWS4: each weight widened once per two
rows of A), or (WIDE) a block of W's rows at a time widened and scaled into a float32 buffer that
stays in the caches, then multiplied by BLAS for all the rows, so that the widening is paid once
per block and the product runs at BLAS's rate. One row, the streaming case, goes through tiles of
one row against 4 rows of W, in the calling thread (ONE) or, for large weights, shared among the
kernel threads by outputs (SPREAD). float32 weights take any of gemm's paths, as before; `scale`
is empty for f32 and bf16.
"""

import numpy as np
from numba import prange

from rnncli.kernels.cpu.blas import gemm
from rnncli.kernels.cpu.gemm import PATHS, _dot, product, widen
from rnncli.kernels.jit import kernel

# paths beyond gemm.PATHS for narrow weights: one row in this thread; one row, outputs shared by the
# threads; several rows by blocks of W widened for BLAS
ONE, SPREAD, WIDE = len(PATHS), len(PATHS) + 1, len(PATHS) + 2


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


@kernel
def _wide(A, W, scale, C):
    """WIDE: C = A @ (widen(W) * scale[:, None]).T, 64 rows of W at a time widened and scaled into a
    float32 buffer (64 x K: 128 KiB at K = 512, in L2), then one BLAS product for every row of A
    into the matching block of C's columns. The buffer is made once a call (about a microsecond,
    against a product of 0.1-2 ms at the shapes that take this path)."""
    N, K = W.shape[0], A.shape[1]
    nb = 64
    buf = np.empty((min(nb, N), K), np.float32)
    for j0 in range(0, N, nb):
        j1 = min(j0 + nb, N)
        for j in range(j0, j1):
            s = scale[j] if scale.shape[0] > 0 else np.float32(1.0)
            for k in range(K):
                buf[j - j0, k] = widen(W[j, k]) * s
        gemm(A, buf[: j1 - j0].T, C[:, j0:j1])


@kernel(inline=True)
def product_any(A, W, WT, scale, C, path):
    """C = (A @ widen(W).T) * scale by `path`: ONE or SPREAD for one row, WIDE for several, else
    gemm.product's path (for narrow W, ROWS or ROWS4: the others read WT, which only float32 weights
    have)."""
    if path == SPREAD:
        spread(A, W, scale, C)
    elif path == ONE:
        _one(A, W, scale, C)
    elif path == WIDE:
        _wide(A, W, scale, C)
    else:
        product(A, W, WT, C, path)
        _scaled(C, scale)
