"""C = A @ W.T from W packed once into panels, by an outer-product micro-kernel held in registers.

The recurrent product multiplies a few rows of A (a thread's h_{t-1}) by the same weights at every
step of a sequence. Here W (N, K) is rearranged once per call of a time loop into panels of TILE_N
of its rows, each stored k by k: panel p's k-th line is W[p*TILE_N : (p+1)*TILE_N, k], contiguous.
A tile of C, TILE_M rows by TILE_N columns, then lives in TILE_M accumulators of TILE_N floats
for the whole K loop: at each k one line of the panel is loaded, each of the TILE_M values
A[i, k] is broadcast, and TILE_M fused multiply-adds update the tile (the loop of BLIS and oneDNN).
Nothing is reduced across a vector and every loaded weight feeds TILE_M multiply-adds.

The tile follows the vector unit the kernels are compiled for: TILE_M = 6 rows; TILE_N = lanes x
registers / 8 floats, so the accumulators fill 6/8 of the register file with room for a panel line
and a broadcast: 16 floats (two 8-float registers) on AVX2's 16 registers, 64 (four 16-float
registers, 24 accumulators) on AVX-512's 32, 16 on ARM64's 32 four-float registers. The vector
type below is LLVM's <TILE_N x float>, which the code generator splits into the CPU's registers.
On a Zen 3 core the loop compiles to 12 vfmadd231ps on ymm0-11, two vmovups and six vbroadcastss
per k, with no spills (tests/test_packed.py checks the assembly for FMAs and for spills).
"""

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.core.codegen import get_host_cpu_features
from numba.extending import intrinsic, models, register_model

from rnncli.base.machine import vector_shape
from rnncli.kernels.jit import kernel


def target_vector_shape() -> tuple[int, int]:
    """(float32 lanes, vector registers) of the CPU Numba compiles for, as its code generator sees it
    (the host's features, unless NUMBA_CPU_NAME or NUMBA_CPU_FEATURES say otherwise, less AVX under
    NUMBA_ENABLE_AVX=0): ARM64 has 32 registers of 4 lanes."""
    if llvm.get_process_triple().startswith(("aarch64", "arm64")):
        return 4, 32
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return vector_shape({f[1:] for f in features.split(",") if f.startswith("+")})


TILE_M = 6
_LANES, _REGISTERS = target_vector_shape()
TILE_N = _LANES * _REGISTERS // 8


class _Vector(types.Type):
    """TILE_N float32 values in vector registers (LLVM's <TILE_N x float>)."""

    def __init__(self):
        super().__init__(name=f"float32x{TILE_N}")


VECTOR = _Vector()
_LLVM_VECTOR = ir.VectorType(ir.FloatType(), TILE_N)


@register_model(_Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _LLVM_VECTOR)


def _address(context, builder, array_type, array, offset):
    """A pointer to the vector at flat element `offset` of a C-contiguous array."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [offset]), _LLVM_VECTOR.as_pointer())


@intrinsic
def tile_n(typingctx):
    """TILE_N as a constant in compiled code (no global is read there): it follows from the CPU
    features Numba compiles for, by which its disk cache keys every kernel."""

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, TILE_N)

    return types.intp(), codegen


@intrinsic
def _zero(typingctx):
    def codegen(context, builder, signature, args):
        return ir.Constant(_LLVM_VECTOR, [0.0] * TILE_N)

    return VECTOR(), codegen


@intrinsic
def _load(typingctx, array, offset):
    """The TILE_N floats from flat element `offset` of a C-contiguous float32 array."""

    def codegen(context, builder, signature, args):
        return builder.load(_address(context, builder, signature.args[0], *args), align=4)

    return VECTOR(array, types.intp), codegen


@intrinsic
def _store(typingctx, array, offset, v):
    def codegen(context, builder, signature, args):
        builder.store(args[2], _address(context, builder, signature.args[0], args[0], args[1]), align=4)
        return context.get_dummy_value()

    return types.none(array, types.intp, VECTOR), codegen


@intrinsic
def _broadcast(typingctx, x):
    def codegen(context, builder, signature, args):
        one = builder.insert_element(ir.Constant(_LLVM_VECTOR, ir.Undefined), args[0], ir.IntType(32)(0))
        lanes = ir.Constant(ir.VectorType(ir.IntType(32), TILE_N), [0] * TILE_N)
        return builder.shuffle_vector(one, ir.Constant(_LLVM_VECTOR, ir.Undefined), lanes)

    return VECTOR(types.float32), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c in each lane, rounded once."""

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(_LLVM_VECTOR, [_LLVM_VECTOR] * 3)
        fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.fma.v{TILE_N}f32")
        return builder.call(fn, args)

    return VECTOR(VECTOR, VECTOR, VECTOR), codegen


@intrinsic
def _lane(typingctx, v, i):
    def codegen(context, builder, signature, args):
        return builder.extract_element(args[0], args[1])

    return types.float32(VECTOR, types.intp), codegen


NO_PANELS = np.zeros((0, TILE_N), np.float32)  # (where drivers take panels or none: none, BLAS runs)


def packed(W: np.ndarray, transposed: bool = False) -> np.ndarray:
    """W (N, K), or if `transposed` W.T given as (K, N), as matmul_packed reads it: (panels x K,
    TILE_N), the last panel's missing rows zero."""
    N, K = W.shape[::-1] if transposed else W.shape
    P = np.empty((-(-N // TILE_N) * K, TILE_N), np.float32)
    pack(W, transposed, P)
    return P


@kernel
def pack(W, transposed, P):
    """P = W in panels (packed()); W (N, K), or (K, N) if `transposed`."""
    N, K = W.shape
    if transposed:
        K, N = W.shape
    for p in range(P.shape[0] // K if K > 0 else 0):
        for k in range(K):
            for c in range(tile_n()):
                n = p * tile_n() + c
                if n >= N:
                    P[p * K + k, c] = 0.0
                elif transposed:
                    P[p * K + k, c] = W[k, n]
                else:
                    P[p * K + k, c] = W[n, k]


@kernel
def _tile(A, i, P, p, C):
    """C[i:i+6, p's columns] = A[i:i+6] @ (panel p).T; rows past A's last repeat the last."""
    M, K = A.shape
    N = C.shape[1]
    r0, r1, r2 = i, min(i + 1, M - 1), min(i + 2, M - 1)
    r3, r4, r5 = min(i + 3, M - 1), min(i + 4, M - 1), min(i + 5, M - 1)
    c0, c1, c2, c3, c4, c5 = _zero(), _zero(), _zero(), _zero(), _zero(), _zero()
    line = p * K * tile_n()
    for k in range(K):
        w = _load(P, line + k * tile_n())
        c0 = _fma(_broadcast(A[r0, k]), w, c0)
        c1 = _fma(_broadcast(A[r1, k]), w, c1)
        c2 = _fma(_broadcast(A[r2, k]), w, c2)
        c3 = _fma(_broadcast(A[r3, k]), w, c3)
        c4 = _fma(_broadcast(A[r4, k]), w, c4)
        c5 = _fma(_broadcast(A[r5, k]), w, c5)
    j = p * tile_n()
    if j + tile_n() <= N:
        _store(C, r0 * N + j, c0)
        _store(C, r1 * N + j, c1)
        _store(C, r2 * N + j, c2)
        _store(C, r3 * N + j, c3)
        _store(C, r4 * N + j, c4)
        _store(C, r5 * N + j, c5)
    else:  # the last panel's columns that exist
        for c in range(N - j):
            C[r0, j + c], C[r1, j + c], C[r2, j + c] = _lane(c0, c), _lane(c1, c), _lane(c2, c)
            C[r3, j + c], C[r4, j + c], C[r5, j + c] = _lane(c3, c), _lane(c4, c), _lane(c5, c)


@kernel
def matmul_packed(A, P, C, p0=0, p1=-1):
    """C = A @ W.T for A (M, K), W packed (packed()), C (M, N), all C-contiguous; single-threaded;
    only panels p0..p1 (columns p0 x TILE_N up to p1 x TILE_N; p1 < 0: to the end) if given. Each
    panel goes through all rows, six at a time (the last six, overlapping, for what is left), so
    that it is read from the nearest cache."""
    M, K = A.shape
    panels = -(-C.shape[1] // tile_n())
    if P.shape[1] != tile_n() or P.shape[0] != panels * K:
        raise ValueError("matmul_packed: P is not W packed for these shapes")
    if C.shape[0] > 1 and C.strides[0] != 4 * C.shape[1] or C.shape[1] > 1 and C.strides[1] != 4:
        raise ValueError("matmul_packed: C's rows are not contiguous")  # (_tile stores whole rows)
    for p in range(p0, panels if p1 < 0 else p1):
        for q in range(-(-M // 6)):
            _tile(A, max(min(6 * q, M - 6), 0), P, p, C)
