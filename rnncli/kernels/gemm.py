"""C = A @ W.T for the recurrent products, as dot products along contiguous rows.

The time loops multiply a few batch rows by the same weights at every step. OpenBLAS repacks the
weights on every such call; these kernels read both operands in place, two rows of A against
eight of W at a time (16 vector accumulators, reduced once each at the end).

The tiles take whole C-contiguous arrays and offsets rather than slices: LLVM vectorizes the
loop along k only when it knows the rows are contiguous, and calls with fewer arguments cost less.
"""
import numpy as np

from rnncli.kernels.jit import kernel


@kernel(reassociate=True)
def _tile(A, i, W, j, C):
    """C[i:i+2, j:j+8] = A[i:i+2] . W[j:j+8], each pair of rows dotted."""
    s00 = s01 = s02 = s03 = s04 = s05 = s06 = s07 = np.float32(0.0)
    s10 = s11 = s12 = s13 = s14 = s15 = s16 = s17 = np.float32(0.0)
    for k in range(A.shape[1]):
        a0, a1 = A[i, k], A[i + 1, k]
        w0, w1, w2, w3 = W[j, k], W[j + 1, k], W[j + 2, k], W[j + 3, k]
        w4, w5, w6, w7 = W[j + 4, k], W[j + 5, k], W[j + 6, k], W[j + 7, k]
        s00 += a0 * w0
        s01 += a0 * w1
        s02 += a0 * w2
        s03 += a0 * w3
        s04 += a0 * w4
        s05 += a0 * w5
        s06 += a0 * w6
        s07 += a0 * w7
        s10 += a1 * w0
        s11 += a1 * w1
        s12 += a1 * w2
        s13 += a1 * w3
        s14 += a1 * w4
        s15 += a1 * w5
        s16 += a1 * w6
        s17 += a1 * w7
    C[i, j] = s00
    C[i, j + 1] = s01
    C[i, j + 2] = s02
    C[i, j + 3] = s03
    C[i, j + 4] = s04
    C[i, j + 5] = s05
    C[i, j + 6] = s06
    C[i, j + 7] = s07
    C[i + 1, j] = s10
    C[i + 1, j + 1] = s11
    C[i + 1, j + 2] = s12
    C[i + 1, j + 3] = s13
    C[i + 1, j + 4] = s14
    C[i + 1, j + 5] = s15
    C[i + 1, j + 6] = s16
    C[i + 1, j + 7] = s17


@kernel(reassociate=True)
def _dot(A, i, W, j):
    s = np.float32(0.0)
    for k in range(A.shape[1]):
        s += A[i, k] * W[j, k]
    return s


@kernel
def matmul_nt(A, W, C):
    """C = A @ W.T for A (M, K), W (N, K), C (M, N), all C-contiguous; single-threaded."""
    M, K = A.shape
    N = W.shape[0]
    M2, N8 = M - M % 2, N - N % 8
    for j in range(0, N8, 8):
        for i in range(0, M2, 2):
            _tile(A, i, W, j, C)
    for i in range(M):  # edges: the last row if M is odd, the last columns if N % 8
        for j in range(N8 if i < M2 else 0, N):
            C[i, j] = _dot(A, i, W, j)


@kernel
def product(A, W, WT, C):
    """C = A @ W.T, WT being W.T made contiguous: this file's kernel for long dot products (K of
    256 or more), where it beats BLAS here, else BLAS (np.dot)."""
    if W.shape[1] >= 256:
        matmul_nt(A, W, C)
    else:
        np.dot(A, WT, C)
