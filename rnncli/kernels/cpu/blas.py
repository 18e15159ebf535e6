"""Matrix products from compiled code through the fastest BLAS in the process.

Numba's np.dot reaches BLAS through SciPy's copy of OpenBLAS and, for C-ordered arrays, asks it for
C.T = B.T @ A.T. NumPy's wheels carry a newer OpenBLAS of their own (64-bit integers), and asked
for the row-major product directly it runs the shapes of this project much faster: on a Zen 2, one
thread, a step's (32, 512) @ (512, 1536) at 74 against 47 GFLOP/s, and a (2500, 64) @ (64, 1536)
input projection on two threads at 150 against 63.

So the compiled code calls two symbols, `rnncli_sgemm` and `rnncli_sgemv` (a single row: the
matrix-vector product is about 4x faster than either sgemm), with CBLAS's row-major interface and
64-bit integers. At import they are bound to the first such functions found among the BLAS
libraries the process has loaded (NumPy's, as threadpoolctl lists them), else to the `_numba_*`
functions here, which hand the product to the BLAS Numba's np.dot uses. Every product goes to the
same library: two OpenBLAS thread pools on two cores, one waking while the other spins, made
single-row generation 15% slower. The symbols are resolved when a cached kernel is loaded, so the
kernels stay cached whichever they are. RNNCLI_BLAS=numba forces the fallbacks.

threadpoolctl's limits reach both libraries, so the thread settings in cpu.py hold for either.
"""

from __future__ import annotations

import ctypes
import os

import llvmlite.binding as llvm
import numpy as np
from numba import types

from rnncli.kernels.jit import callback, kernel

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
_P, _i, _f, _c = types.CPointer(types.float32), types.int64, types.float32, types.intc
GEMM = types.void(_c, _c, _c, _i, _i, _i, _f, _P, _i, _P, _i, _f, _P, _i)  # cblas_sgemm's, 64-bit integers
GEMV = types.void(_c, _c, _i, _i, _f, _P, _i, _P, _i, _f, _P, _i)  # cblas_sgemv's
_sgemm = types.ExternalFunction("rnncli_sgemm", GEMM)
_sgemv = types.ExternalFunction("rnncli_sgemv", GEMV)
_ip = types.intp
_xxgemm = types.ExternalFunction(
    "numba_xxgemm",
    types.intc(types.char, types.char, types.char, _ip, _ip, _ip, _P, _P, _ip, _P, _ip, _P, _P, _ip),
)
_xxgemv = types.ExternalFunction(
    "numba_xxgemv", types.intc(types.char, types.char, _ip, _ip, _P, _P, _ip, _P, _P, _P)
)
# the names libraries export CBLAS with 64-bit integers under
PREFIXES = ("scipy_cblas_s", "cblas_s")
SUFFIXES = ("64_", "_64")
CHAR_S, CHAR_T, CHAR_N = 115, 84, 78  # 's', 'T', 'N' for Numba's helpers


@callback(GEMM)
def _numba_gemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):
    """Row-major C = alpha op(A) op(B) + beta C as the column-major C.T = op(B).T op(A).T that
    Numba's own BLAS helper computes (order is always ROW_MAJOR here)."""
    scalars = np.empty(2, np.float32)
    scalars[0], scalars[1] = alpha, beta
    _xxgemm(
        CHAR_S,
        CHAR_T if tb == TRANS else CHAR_N,
        CHAR_T if ta == TRANS else CHAR_N,
        N,
        M,
        K,
        scalars.ctypes,
        B,
        ldb,
        A,
        lda,
        scalars[1:].ctypes,
        C,
        ldc,
    )


@callback(GEMV)
def _numba_gemv(order, trans, M, N, alpha, A, lda, X, incx, beta, Y, incy):
    """Row-major y = alpha op(A) x + beta y through Numba's helper: A (M, N) row-major is (N, M)
    column-major, so each transposition flips (incx and incy are always 1 here)."""
    scalars = np.empty(2, np.float32)
    scalars[0], scalars[1] = alpha, beta
    _xxgemv(
        CHAR_S, CHAR_N if trans == TRANS else CHAR_T, N, M, scalars.ctypes, A, lda, X, scalars[1:].ctypes, Y
    )


def _find() -> tuple[int, int, str]:
    """(sgemm's address, sgemv's, where from): 64-bit-integer CBLAS from one loaded BLAS library."""
    # every BLAS the kernels may call is loaded here, before any thread limit is set (the fallback's,
    # SciPy's, would otherwise load at its first call, unlimited)
    import scipy.linalg.cython_blas  # noqa: F401

    if os.environ.get("RNNCLI_BLAS") != "numba":
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            if info.get("user_api") != "blas":
                continue
            try:
                lib = ctypes.CDLL(info["filepath"])
            except OSError:
                continue
            for prefix in PREFIXES:
                for suffix in SUFFIXES:
                    fns = [getattr(lib, f"{prefix}{name}{suffix}", None) for name in ("gemm", "gemv")]
                    if None not in fns:
                        return (
                            *(ctypes.cast(f, ctypes.c_void_p).value for f in fns),
                            f"{info['filepath']} ({prefix}gemm{suffix})",
                        )
    return _numba_gemm.address, _numba_gemv.address, "numba"


GEMM_AT, GEMV_AT, SOURCE = _find()
llvm.add_symbol("rnncli_sgemm", GEMM_AT)
llvm.add_symbol("rnncli_sgemv", GEMV_AT)


@kernel(inline=True)
def _operand(X):
    """(transposed?, leading dimension) of a 2-D operand whose rows (or columns) are contiguous and
    lie apart in memory in order, or (-1, 0) for anything else (reversed, overlapping, strided)."""
    r, c = X.shape
    s0, s1 = X.strides[0] // 4, X.strides[1] // 4
    if (s1 == 1 or c <= 1) and (r <= 1 or s0 >= max(c, 1)):
        return NO_TRANS, s0 if r > 1 else max(c, 1)
    if (s0 == 1 or r <= 1) and (c <= 1 or s1 >= max(r, 1)):
        return TRANS, s1 if c > 1 else max(r, 1)
    return -1, 0


@kernel(inline=True)
def gemm(A, B, C):
    """C = A @ B for float32 A (M, K), B (K, N) and C (M, N), C's rows contiguous and in order (a
    block of columns of a C-contiguous array will do); A and B may be transposed views. Other
    operands go to np.dot (a single row's, unless it is contiguous)."""
    M, K = A.shape
    N = B.shape[1]
    ta, lda = _operand(A)
    tb, ldb = _operand(B)
    tc, ldc = _operand(C)
    if K == 0:
        C[:] = 0.0  # (sgemv returns at once on an empty product, leaving y as it was)
    elif ta < 0 or tb < 0 or tc != NO_TRANS or (M == 1 and A.strides[1] != 4):
        C[:] = np.dot(np.ascontiguousarray(A), np.ascontiguousarray(B))
    elif M == 1 and N > 0:  # c = B.T a: B (K, N) row-major transposed, or B.T's own rows
        _sgemv(
            ROW_MAJOR,
            NO_TRANS if tb == TRANS else TRANS,
            N if tb == TRANS else K,
            K if tb == TRANS else N,
            np.float32(1.0),
            B.ctypes,
            ldb,
            A.ctypes,
            1,
            np.float32(0.0),
            C.ctypes,
            1,
        )
    elif M > 0 and N > 0:
        _sgemm(
            ROW_MAJOR,
            ta,
            tb,
            M,
            N,
            K,
            np.float32(1.0),
            A.ctypes,
            lda,
            B.ctypes,
            ldb,
            np.float32(0.0),
            C.ctypes,
            ldc,
        )
