"""C = A @ W.T for the recurrent products: a few batch rows times the same weights at every step.

OpenBLAS repacks the weights on every such call. packed.py packs them once per time loop for an
outer-product kernel (the PACKED path); two kernels here read both operands in place:
- matmul_nt, dot products along rows of W (N, K): two rows of A against eight of W at a time, in
  16 vector accumulators reduced once each at the end. Good when K is long (the reductions are
  then a small share).
- matmul_nn, rows of C built from rows of W.T (K, N): two rows of C updated from eight rows of
  W.T at a time, vectorized along N, no reductions. Good when a few rows of C and eight of W.T
  (about 40 N bytes) stay in L1.
matmul_nt comes in two tile widths: eight rows of W (16 accumulators, for CPUs with 32 vector
registers: AVX-512, ARM64) and four (8 accumulators, which fit AVX2's 16). Each accumulator is one
vector register whatever its width (LLVM vectorizes the dot products along K at the width of the
CPU it compiles for), so what sizes a tile is the number of registers. `product` runs the path it
is given; rnncli/kernels/cpu/tune.py measures which is fastest for each shape on this CPU. `rule` is the
fallback, from measurements on a Zen 4 core; its tile is the one that fits the registers of the CPU
the kernels are compiled for, a constant fixed at compile time (`_vector_registers`).

The kernels take whole C-contiguous arrays and offsets rather than slices: LLVM vectorizes the
inner loops only when it knows the rows are contiguous and the indices non-negative.

matmul_nt reads W of any format generation keeps (kernels/formats.py): each weight goes through
`widen`, which is nothing for float32 and, for bf16 (uint16) or int8, turns it into a float32 in
registers (kernels/cpu/narrow.py applies int8's row scales).
"""

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from rnncli.kernels.cpu.blas import gemm
from rnncli.kernels.cpu.packed import matmul_packed, target_vector_shape
from rnncli.kernels.jit import kernel

# the recurrent product's paths (`product`'s `path`): BLAS on W.T; our dot-product kernel on W with
# tiles of 8 or 4 rows; our row-building kernel on W.T; the outer-product kernel on W packed
# (packed.py), for a layer's time loop only (generation keeps no packed weights)
BLAS, ROWS, ROWS4, COLS, PACKED = 0, 1, 2, 3, 4
PATHS = ("blas", "rows", "rows4", "cols", "packed")
PAD = 16  # floats added to each row of a W the dot-product kernel reads


def padded(W: np.ndarray) -> np.ndarray:
    """W (..., N, K) as the dot-product kernel reads it best: C-contiguous, each row PAD floats longer
    (unused), since rows a multiple of 4 KiB apart would map a tile's rows onto the same L1 sets."""
    out = np.zeros(W.shape[:-1] + (W.shape[-1] + PAD,), W.dtype)
    out[..., : W.shape[-1]] = W
    return out


def vector_registers() -> int:
    """The vector registers of the CPU Numba compiles for (packed.target_vector_shape): 32 on ARM64
    and with AVX-512, else 16."""
    return target_vector_shape()[1]


@intrinsic
def _vector_registers(typingctx):
    """vector_registers() as a constant in the compiled code. Numba's disk cache keys each kernel by
    the CPU name and features it compiles for, from which vector_registers() follows, so a kernel
    is reused only where the constant holds."""

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, vector_registers())

    return types.intp(), codegen


@intrinsic
def widen(typingctx, q):
    """A weight as float32, whatever format holds it: float32 as it is; bf16 (uint16: a float32's upper
    half) shifted into the upper half of a 32-bit word and read as float32 (exact); int8 converted
    (its row's scale is applied to the finished sum). In a loop, LLVM vectorizes these as vpmovzxwd +
    vpslld and vpmovsxbd + vcvtdq2ps on x86."""
    if q not in (types.float32, types.uint16, types.int8):
        return None

    def codegen(context, builder, signature, args):
        (x,) = args
        if q == types.uint16:
            word = builder.shl(builder.zext(x, ir.IntType(32)), ir.Constant(ir.IntType(32), 16))
            return builder.bitcast(word, ir.FloatType())
        if q == types.int8:
            return builder.sitofp(x, ir.FloatType())
        return x

    return types.float32(q), codegen


@kernel(reassociate=True)
def _tile(A, i, W, j, C):
    """C[i:i+2, j:j+8] = A[i:i+2] . W[j:j+8], each pair of rows dotted."""
    s00 = s01 = s02 = s03 = s04 = s05 = s06 = s07 = np.float32(0.0)
    s10 = s11 = s12 = s13 = s14 = s15 = s16 = s17 = np.float32(0.0)
    for k in range(A.shape[1]):
        a0, a1 = A[i, k], A[i + 1, k]
        w0, w1, w2, w3 = widen(W[j, k]), widen(W[j + 1, k]), widen(W[j + 2, k]), widen(W[j + 3, k])
        w4, w5, w6, w7 = widen(W[j + 4, k]), widen(W[j + 5, k]), widen(W[j + 6, k]), widen(W[j + 7, k])
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
def _tile4(A, i, W, j, C):
    """C[i:i+2, j:j+4] = A[i:i+2] . W[j:j+4]: _tile for 16 vector registers."""
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = np.float32(0.0)
    for k in range(A.shape[1]):
        a0, a1 = A[i, k], A[i + 1, k]
        w0, w1, w2, w3 = widen(W[j, k]), widen(W[j + 1, k]), widen(W[j + 2, k]), widen(W[j + 3, k])
        s00 += a0 * w0
        s01 += a0 * w1
        s02 += a0 * w2
        s03 += a0 * w3
        s10 += a1 * w0
        s11 += a1 * w1
        s12 += a1 * w2
        s13 += a1 * w3
    C[i, j], C[i, j + 1], C[i, j + 2], C[i, j + 3] = s00, s01, s02, s03
    C[i + 1, j], C[i + 1, j + 1], C[i + 1, j + 2], C[i + 1, j + 3] = s10, s11, s12, s13


@kernel(reassociate=True)
def _dot(A, i, W, j):
    s = np.float32(0.0)
    for k in range(A.shape[1]):
        s += A[i, k] * widen(W[j, k])
    return s


@kernel
def matmul_nt(A, W, C, tile=8):
    """C = A @ W.T for A (M, K), W (N, K), C (M, N), all C-contiguous; single-threaded; tiles of
    2 rows by `tile` (8 or 4) rows of W, which may be float32, bf16 or int8 (widen; unscaled)."""
    M, K = A.shape
    N = W.shape[0]
    Nt = N - N % tile
    for j in range(0, Nt, tile):
        for p in range(M // 2 + M % 2 if M > 1 else 0):
            # an odd last row goes with the one before it, which is written again unchanged
            if tile == 8:
                _tile(A, min(2 * p, M - 2), W, j, C)
            else:
                _tile4(A, min(2 * p, M - 2), W, j, C)
    for i in range(M):  # edges: the last columns if N % tile, and a single row
        for j in range(Nt if M > 1 else 0, N):
            C[i, j] = _dot(A, i, W, j)


@kernel
def _rows_nn(A, i, WT, k, C):
    """C[i:i+2] += A[i:i+2, k:k+8] @ WT[k:k+8], along the whole rows."""
    a00, a01, a02, a03 = A[i, k], A[i, k + 1], A[i, k + 2], A[i, k + 3]
    a04, a05, a06, a07 = A[i, k + 4], A[i, k + 5], A[i, k + 6], A[i, k + 7]
    a10, a11, a12, a13 = A[i + 1, k], A[i + 1, k + 1], A[i + 1, k + 2], A[i + 1, k + 3]
    a14, a15, a16, a17 = A[i + 1, k + 4], A[i + 1, k + 5], A[i + 1, k + 6], A[i + 1, k + 7]
    for j in range(C.shape[1]):
        w0, w1, w2, w3 = WT[k, j], WT[k + 1, j], WT[k + 2, j], WT[k + 3, j]
        w4, w5, w6, w7 = WT[k + 4, j], WT[k + 5, j], WT[k + 6, j], WT[k + 7, j]
        C[i, j] += a00 * w0 + a01 * w1 + a02 * w2 + a03 * w3 + a04 * w4 + a05 * w5 + a06 * w6 + a07 * w7
        C[i + 1, j] += a10 * w0 + a11 * w1 + a12 * w2 + a13 * w3 + a14 * w4 + a15 * w5 + a16 * w6 + a17 * w7


@kernel
def _row_nn(A, i, WT, k, k1, C):
    """C[i] += A[i, k:k1] @ WT[k:k1], eight k's at a time (an odd last row, and K % 8)."""
    for k8 in range(k, k1 - 7, 8):
        a0, a1, a2, a3 = A[i, k8], A[i, k8 + 1], A[i, k8 + 2], A[i, k8 + 3]
        a4, a5, a6, a7 = A[i, k8 + 4], A[i, k8 + 5], A[i, k8 + 6], A[i, k8 + 7]
        for j in range(C.shape[1]):
            C[i, j] += (
                a0 * WT[k8, j]
                + a1 * WT[k8 + 1, j]
                + a2 * WT[k8 + 2, j]
                + a3 * WT[k8 + 3, j]
                + a4 * WT[k8 + 4, j]
                + a5 * WT[k8 + 5, j]
                + a6 * WT[k8 + 6, j]
                + a7 * WT[k8 + 7, j]
            )
    for kk in range(k1 - (k1 - k) % 8, k1):
        a = A[i, kk]
        for j in range(C.shape[1]):
            C[i, j] += a * WT[kk, j]


@kernel
def matmul_nn(A, WT, C):
    """C = A @ WT for A (M, K), WT (K, N), C (M, N), all C-contiguous; single-threaded."""
    M, K = A.shape
    M2, K8 = M - M % 2, K - K % 8
    C[:] = 0.0
    for k in range(0, K8, 8):
        for i in range(0, M2, 2):
            _rows_nn(A, i, WT, k, C)
    for i in range(M):  # edges: the last row if M is odd, the last k's if K % 8
        if i < M2:
            _row_nn(A, i, WT, K8, K, C)
        else:
            _row_nn(A, i, WT, 0, K, C)


@kernel
def _nn_fits(N):
    """Whether matmul_nn's working set for outputs of N columns (about 40 N bytes) stays in L1 and
    is large enough to beat BLAS."""
    return 384 <= N <= 1024


@kernel
def reads_rows(N, K):
    """Whether `rule` multiplies by W (N, K) itself (matmul_nt) rather than by W.T: for long
    dot products, and for outputs too narrow or too wide for matmul_nn."""
    return K >= 1024 or (K >= 256 and not _nn_fits(N))


@kernel
def rule(N, K):
    """The path for C (M, N) = A (M, K) @ W.T without measurements (Zen 4's): matmul_nt when
    K >= 1024, else matmul_nn when 384 <= N <= 1024, else matmul_nt when K >= 256, else BLAS,
    which wins on short products. matmul_nt's tile is the one the CPU's registers hold."""
    if reads_rows(N, K):
        return ROWS if _vector_registers() >= 32 else ROWS4
    return COLS if _nn_fits(N) else BLAS


@kernel
def product(A, W, WT, C, path):
    """C = A @ W.T by `path` (PATHS), WT being W.T made contiguous, or for PACKED W packed
    (packed.packed): only the operand that path reads is used (W for the rows paths, else WT);
    the other may be empty, and W's rows may be longer than K (padding)."""
    if path == PACKED:
        matmul_packed(A, WT, C)
    elif path == ROWS:
        matmul_nt(A, W, C, 8)
    elif path == ROWS4:
        matmul_nt(A, W, C, 4)
    elif path == COLS:
        matmul_nn(A, WT, C)
    else:
        gemm(A, WT, C)


@kernel(parallel=True)
def time_product(A, W, WT, C, path, reps, parts):
    """`reps` rounds of products by `path`, each of `parts` threads on its own rows of A and C, as
    the drivers run them (rnncli/kernels/cpu/tune.py times this). W (n, N, K') and WT (n, K, N) hold n weight
    matrices, taken in turn within a round: one, as a layer's time loop reads it, or as many as a
    generation step goes through, which then share the caches."""
    rows = A.shape[0] // parts
    for k in prange(parts):
        for _ in range(reps):
            for w in range(W.shape[0]):
                product(A[k * rows : (k + 1) * rows], W[w], WT[w], C[k * rows : (k + 1) * rows], path)
