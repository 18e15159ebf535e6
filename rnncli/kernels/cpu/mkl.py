"""MKL's packed GEMM for the recurrent products, where the `mkl` wheel is installed (rnncli[mkl]; never
required): the weights are packed once per sequence call (cblas_sgemm_pack, by `pack` here, in Python),
and the compiled time loop calls cblas_sgemm_compute on them at every step (`packed_gemm`). It is one
more path the tuner times against ours (gemm.MKL); it is taken only where it measures fastest.

Importing this module loads nothing: `library()` loads libmkl_rt the first time the tuner considers
the path or a driver runs it. MKL is then set to run sequential before its first call, so that it
brings no thread pool of its own: each kernel thread calls it on its own rows, as it calls BLAS
(steps.py). The compiled code reaches cblas_sgemm_compute through the address written at the head of
each packed buffer, not through a symbol bound at import, so a cached kernel links whether MKL is
installed or not, and the other BLAS calls stay on blas.py's library. The ILP64 names (`_64`) are used,
whatever interface layer the environment asks mkl_rt for.
"""

from __future__ import annotations

import ctypes
import os
from importlib import metadata

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from rnncli.kernels.jit import kernel

ROW_MAJOR, NO_TRANS, TRANS, B_MATRIX, PACKED = 101, 111, 112, 162, 151
SEQUENTIAL = 1  # MKL_THREADING_SEQUENTIAL
HEAD = 8  # int64 words before the packed data: the compute function's address, K, N, the rows packed for
_state: dict = {}  # "installed": the library's path or None; "lib": the loaded library or None


def installed() -> str | None:
    """The path of the `mkl` wheel's libmkl_rt, found without loading it, or None."""
    if "installed" not in _state:
        try:
            files = metadata.distribution("mkl").files or []
        except metadata.PackageNotFoundError:
            files = []
        found = sorted(str(f.locate()) for f in files if os.path.basename(str(f)).startswith("libmkl_rt."))
        _state["installed"] = found[0] if found else None
    return _state["installed"]


def library():
    """libmkl_rt loaded, sequential, its packed-GEMM functions typed; None where it is not installed,
    will not load or lacks them."""
    if "lib" in _state:
        return _state["lib"]
    _state["lib"] = None
    path = installed()
    try:
        lib = ctypes.CDLL(path) if path else None
    except OSError:
        lib = None
    names = (
        "MKL_Set_Threading_Layer",
        *(f"cblas_sgemm_{f}_64" for f in ("pack_get_size", "pack", "compute")),
    )
    if lib is None or any(getattr(lib, name, None) is None for name in names):
        return None
    i, f, p = ctypes.c_longlong, ctypes.c_float, ctypes.c_void_p
    lib.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
    lib.MKL_Set_Threading_Layer(SEQUENTIAL)
    lib.cblas_sgemm_pack_get_size_64.restype = ctypes.c_size_t
    lib.cblas_sgemm_pack_get_size_64.argtypes = [ctypes.c_int, i, i, i]
    lib.cblas_sgemm_pack_64.argtypes = [ctypes.c_int] * 3 + [i] * 3 + [f, p, i, p]
    _state["lib"] = lib
    return lib


def pack(S: np.ndarray, trans: bool, M: int, into: np.ndarray | None = None) -> np.ndarray:
    """op(S) packed for C (M, N) = A (M, K) @ op(S), op(S) = S.T (trans) or S, S float32 C-contiguous:
    an int64 buffer (`into` when it is large enough) that packed_gemm reads, valid while S is
    unchanged; packed for M rows, and used for up to M. It must never be copied elsewhere (MKL's
    packed data is laid out for its address). library() must have loaded."""
    lib = library()
    K, N = S.shape[::-1] if trans else S.shape
    M = max(M, 1)
    words = HEAD + -(-lib.cblas_sgemm_pack_get_size_64(B_MATRIX, M, N, K) // 8)
    out = into if into is not None and into.shape[0] >= words else np.empty(words, np.int64)
    out[:4] = ctypes.cast(lib.cblas_sgemm_compute_64, ctypes.c_void_p).value, K, N, M
    S = np.ascontiguousarray(S, np.float32)
    at = out.ctypes.data + 8 * HEAD
    lib.cblas_sgemm_pack_64(
        ROW_MAJOR, B_MATRIX, TRANS if trans else NO_TRANS, M, N, K, 1.0, S.ctypes.data, S.shape[1], at
    )
    return out


@intrinsic
def _compute(typingctx, at, m, n, k, a, lda, b, c, ldc):
    """cblas_sgemm_compute_64 at address `at`: C (m, n) = A (m, k) @ the packed B, row-major, the
    matrices by their addresses."""
    sig = types.void(*[types.int64] * 9)

    def codegen(context, builder, signature, args):
        at, m, n, k, a, lda, b, c, ldc = args
        i32, i64, f32 = ir.IntType(32), ir.IntType(64), ir.FloatType()
        fp = f32.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i64, i64, i64, i64, i64, fp, i64, fp, i64, f32, fp, i64])
        fn = builder.inttoptr(at, fnty.as_pointer())
        ptr = [builder.inttoptr(x, fp) for x in (a, b, c)]
        const = [i32(ROW_MAJOR), i64(NO_TRANS), i64(PACKED)]
        builder.call(fn, [*const, m, n, k, ptr[0], lda, ptr[1], n, f32(0.0), ptr[2], ldc])
        return context.get_dummy_value()

    return sig, codegen


@kernel(inline=True)
def packed_gemm(A, P, C):
    """C = A @ op(S) for A (M, K) and C (M, N) whose rows are contiguous and in order, op(S) (K, N)
    packed into P by `pack` for at least M rows."""
    M = A.shape[0]
    if M > 0:  # (addresses from views: arithmetic on them would mix unsigned and signed integers)
        a, b, c = A.ctypes.data, P[HEAD:].ctypes.data, C.ctypes.data
        _compute(P[0], M, P[2], P[1], a, A.strides[0] // 4, b, c, C.strides[0] // 4)
