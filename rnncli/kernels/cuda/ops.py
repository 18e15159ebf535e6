"""The GPU backend's products, loss and optimizer: kernels/cpu/backend.py's API on numba.cuda device arrays
(the array helpers are in cuda/arrays.py, the recurrences in cuda/recur.py, generation in
cuda/decode.py).

Every function launches its kernels on the default stream, with a grid computed from the shapes, and
returns before they finish; the two that return a float copy a small buffer back, which waits.
Tile sizes and block shapes are design constants written into the kernels as literals (jitted code
reads no globals); the launches here use the same numbers. Data are float32 as on the CPU, with
float64 where a long sum needs it (cross-entropy, sum of squares). Every sum has a fixed order for
given shapes (no atomics), so a run repeats bit for bit. Scratch buffers: Scratch.buffer.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import boolean, cuda, float32, float64, int32, int64, uint32

from rnncli.kernels.cuda.arrays import Scratch, copy, grid_blocks, transpose_view, zeros_into
from rnncli.kernels.jit import gpu_kernel

_MIN_SPLIT = 256  # fewest reduction steps a split-K block takes (tests lower it)
_MAX_ROWS = 65535 * 64  # rows of out one _gemm launch covers (64 a block, grid y <= 65535; tests lower it)
_POOL = Scratch()  # for the functions the API gives no scratch (matmul, softmax_xent, ...)


def _width(n: int) -> int:
    """A block width (32, 64 or 128 threads) for rows of n items."""
    return 32 if n <= 32 else 64 if n <= 64 else 128


@functools.cache
def _sm_count() -> int:
    """The GPU's multiprocessors (16 in the simulator, which does not say)."""
    return getattr(cuda.get_current_device(), "MULTIPROCESSOR_COUNT", None) or 16


# ---------------------------------------------------------------- products
@gpu_kernel
def _gemm(A, B, bias, out, sums, trans_a, trans_b, with_bias, with_sums, chunk):
    """out[z] = op(A) @ op(B) over the z-th `chunk` of the reduction (+ bias on every row when z == 0
    and with_bias); sums[z] = the row sums of op(A) over that chunk, when with_sums (bias and sums
    are not read otherwise). op(A) (N, K) is A, or A.T when trans_a (A stored (K, N)); op(B) (K, M)
    is B, or B.T when trans_b (B stored (M, K)).

    Block (16, 16) computes a 64 x 64 tile of out: thread (tx, ty) rows ty + 16i, columns tx + 16j
    (i, j < 4), so a warp's shared reads and its writes of out are consecutive. The reduction runs in
    steps of 16 through two shared tiles (16 x 64 each, rows padded to 65 floats against bank
    conflicts), loaded by all 256 threads with consecutive threads on consecutive addresses of
    whichever layout the operand has; elements past the edges load as 0. Indices are cast to uint32
    where it counts (NumPy's negative-index wraparound costs ~40 registers otherwise). The row sums
    (weight_grad's bias gradient) come from the A tiles of the blocks of the first column tile, its first 64
    threads each adding up one row.
    """
    sh = cuda.shared.array(0, float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    t = ty * 16 + tx
    N, M = out.shape[1], out.shape[2]
    K = A.shape[0] if trans_a else A.shape[1]
    r0, c0, z = cuda.blockIdx.y * 64, cuda.blockIdx.x * 64, cuda.blockIdx.z
    k_lo = z * chunk
    k_hi = min(K, k_lo + chunk)
    acc = cuda.local.array(16, float32)
    a = cuda.local.array(4, float32)
    b = cuda.local.array(4, float32)
    for q in range(16):
        acc[q] = 0
    with_sums = with_sums and c0 == 0 and t < 64
    rs = float32(0)
    # this thread's loads: reduction index ka + dka q, row ra + dra q of the tile (q < 4)
    if trans_a:
        ka, ra, dka, dra = t >> 6, t & 63, 4, 0
    else:
        ka, ra, dka, dra = t & 15, t >> 4, 0, 16
    if trans_b:
        kb, cb, dkb, dcb = t & 15, t >> 4, 0, 16
    else:
        kb, cb, dkb, dcb = t >> 6, t & 63, 4, 0
    for k0 in range(k_lo, k_hi, 16):
        for q in range(4):
            kk, r = ka + dka * q, ra + dra * q
            val = float32(0)
            if k0 + kk < k_hi and r0 + r < N:
                val = A[uint32(k0 + kk), uint32(r0 + r)] if trans_a else A[uint32(r0 + r), uint32(k0 + kk)]
            sh[uint32(kk * 65 + r)] = val
            kk, c = kb + dkb * q, cb + dcb * q
            val = float32(0)
            if k0 + kk < k_hi and c0 + c < M:
                val = B[uint32(c0 + c), uint32(k0 + kk)] if trans_b else B[uint32(k0 + kk), uint32(c0 + c)]
            sh[uint32(1040 + kk * 65 + c)] = val
        cuda.syncthreads()
        for kk in range(16):
            for i in range(4):
                a[i] = sh[uint32(kk * 65 + ty + 16 * i)]
                b[i] = sh[uint32(1040 + kk * 65 + tx + 16 * i)]
            for i in range(4):
                for j in range(4):
                    acc[i * 4 + j] = cuda.fma(a[i], b[j], acc[i * 4 + j])
        if with_sums:
            for kk in range(16):
                rs += sh[uint32(kk * 65 + t)]
        cuda.syncthreads()
    if with_sums and r0 + t < N:
        sums[z, r0 + t] = rs
    with_bias = with_bias and z == 0
    for i in range(4):
        r = r0 + ty + 16 * i
        for j in range(4):
            c = c0 + tx + 16 * j
            if r < N and c < M:
                out[z, r, c] = acc[i * 4 + j] + bias[c] if with_bias else acc[i * 4 + j]


@gpu_kernel
def _sum_parts(parts, out):
    """out[j] = parts[0, j] + parts[1, j] + ... (in that order); parts (S, L), out (L,)."""
    for j in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        s = parts[0, j]
        for q in range(1, parts.shape[0]):
            s += parts[q, j]
        out[j] = s


def _operand(X):
    """(C-contiguous array, whether it is X transposed): X itself, the array X is a transposed view of,
    or else a contiguous copy."""
    if X.is_c_contiguous():
        return X, False
    if X.is_f_contiguous():
        return transpose_view(X), True
    return copy(X), False


def _product(A, Bm, bias, out, sums, pool):
    """out (N, M) = A @ Bm (+ bias), and sums (N,) = the row sums of A unless sums is None. When
    the output has too few 64 x 64 tiles to fill the GPU, the reduction is split among blocks, each
    writing its partial products into pool, summed after."""
    if out.shape[0] > _MAX_ROWS:  # a grid's y dimension is at most 65535 blocks: rows in several launches
        if sums is not None or not A.is_c_contiguous():  # (only the T*B-row products get here)
            raise ValueError(
                f"the CUDA product splits more than {_MAX_ROWS} rows only for a row-major A, no sums"
            )
        for r in range(0, out.shape[0], _MAX_ROWS):
            _product(A[r : r + _MAX_ROWS], Bm, bias, out[r : r + _MAX_ROWS], None, pool)
        return
    (a, ta), (b, tb), (N, M), K = _operand(A), _operand(Bm), out.shape, A.shape[1]
    if N == 0 or M == 0:
        return
    gx, gy = -(-M // 64), -(-N // 64)
    splits = max(1, min(-(-2 * _sm_count() // (gx * gy)), K // _MIN_SPLIT, 64))
    chunk = -(-K // splits)
    per = -(-chunk // 16) * 16  # a multiple of 16 (the kernel's step)
    splits = max(1, -(-K // per))
    with_bias, with_sums = bias is not None, sums is not None
    bias = bias if with_bias else _POOL.buffer("none", (1,))
    dest = out.reshape(1, N, M) if splits == 1 else pool.buffer("gemm", (splits, N, M))
    dsums = pool.buffer("sums", (splits, N)) if splits > 1 or not with_sums else sums.reshape(1, N)
    _gemm[(gx, gy, splits), (16, 16), 0, 2080 * 4](a, b, bias, dest, dsums, ta, tb, with_bias, with_sums, per)
    if splits > 1:
        _sum_parts[grid_blocks(N * M), 256](dest.reshape(splits, N * M), out.reshape(N * M))
        if with_sums:
            _sum_parts[grid_blocks(N), 256](dsums, sums)


def matmul(A, Bm, bias, out):
    """out = A @ Bm (+ bias on every row unless bias is None); A (N, K), out (N, M) C-contiguous;
    Bm (K, M) contiguous or a transposed view of a contiguous (M, K) array (see transpose_view)."""
    _product(A, Bm, bias, out, None, _POOL)


def weight_grad(scratch, d, x, g_weight, g_bias):
    """g_weight = d.T @ x (G, I) and g_bias = the column sums of d, for d (N, G), x (N, I)."""
    _product(transpose_view(d), x, None, g_weight, g_bias, scratch)


# ---------------------------------------------------------------- gathers and scatters
@gpu_kernel
def _gather(table, ids, out):
    """out[n, g] = table[ids[n], g]: block x covers columns, block y rows (grid-stride)."""
    g = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if g < out.shape[1]:
        for n in range(cuda.blockIdx.y, out.shape[0], cuda.gridDim.y):
            out[n, g] = table[ids[n], g]


@gpu_kernel
def _links(ids, links):
    """For each row n: links[0, n] = the next row with the same id (-1: none), links[1, n] = 1 if no
    earlier row has it (n heads its chain), else 0."""
    N = ids.shape[0]
    for n in range(cuda.grid(1), N, cuda.gridsize(1)):
        v, nxt, head = ids[n], -1, 1
        for j in range(n + 1, N):
            if ids[j] == v:
                nxt = j
                break
        for j in range(n - 1, -1, -1):
            if ids[j] == v:
                head = 0
                break
        links[0, n], links[1, n] = nxt, head


@gpu_kernel
def _chain_sums(ids, links, d, out):
    """out[ids[n], g] = the sum of d[j, g] over the rows j sharing row n's id, in row order, for each
    chain head n: block x covers columns, block y rows (grid-stride)."""
    g = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if g < d.shape[1]:
        for n in range(cuda.blockIdx.y, d.shape[0], cuda.gridDim.y):
            if links[1, n]:
                acc = d[n, g]
                j = links[0, n]
                while j >= 0:
                    acc += d[j, g]
                    j = links[0, j]
                out[ids[n], g] = acc


def gather_rows(table, ids, out):
    """out[n] = table[ids[n]]; table (V, G), ids (N,) int64, out (N, G)."""
    N, G = out.shape
    if N and G:
        w = _width(G)
        _gather[(-(-G // w), min(N, 65535)), w](table, ids, out)


def scatter_rows(ids, d, out):
    """out (V, G) = the sum of d[n] over the n with ids[n] == v, for each v (overwrites out). Rows with
    one id are linked into a chain; each chain's first row sums it, column by column, in row order:
    parallel over rows and columns, without atomics, the same result every run."""
    zeros_into(out)
    N, G = d.shape
    if N == 0 or G == 0:
        return
    links = _POOL.buffer("links", (2, N), np.int32)
    _links[grid_blocks(N, 128), 128](ids, links)
    w = _width(G)
    _chain_sums[(-(-G // w), min(N, 65535)), w](ids, links, d, out)


def embedding_backward(ids, d_x, d_table):
    """d_table (V, E) = 0, then d_table[ids[n]] += d_x[n] for every n."""
    scatter_rows(ids, d_x, d_table)


# ---------------------------------------------------------------- loss, optimizer, misc
@gpu_kernel
def _xent(logits, targets, dlogits, scale, losses):
    """One block per row n (grid-stride), nt = blockDim.x a power of two. Each thread keeps a running
    max m of its share of the row and the float64 sum s of exp(x - m); the threads' (m, s) pairs are
    merged by halving in shared memory (sh[:nt] the maxima, sh[nt:] the sums), in a fixed order.
    dlogits[n] = (softmax - onehot) * scale; losses[n] = log(s) + m - logits[n, target]."""
    sh = cuda.shared.array(0, float64)
    tx, nt, V = cuda.threadIdx.x, cuda.blockDim.x, logits.shape[1]
    for n in range(cuda.blockIdx.x, logits.shape[0], cuda.gridDim.x):
        m, s = float32(-math.inf), 0.0
        for v in range(tx, V, nt):
            x = logits[n, v]
            if x > m:
                s, m = s * math.exp(m - x) + 1.0, x
            else:
                s += math.exp(x - m)
        sh[tx], sh[nt + tx] = m, s
        cuda.syncthreads()
        h = nt // 2
        while h > 0:
            if tx < h and sh[nt + tx + h] > 0.0:  # (a thread with no elements has s = 0, m = -inf)
                m1, m2 = sh[tx], sh[tx + h]
                mm = max(m1, m2)
                sh[nt + tx] = sh[nt + tx] * math.exp(m1 - mm) + sh[nt + tx + h] * math.exp(m2 - mm)
                sh[tx] = mm
            cuda.syncthreads()
            h //= 2
        m, s = float32(sh[0]), sh[nt]
        cuda.syncthreads()  # all have read sh before the next row writes it
        inv = float32(1.0 / s)
        t = targets[n]
        for v in range(tx, V, nt):
            p = math.exp(logits[n, v] - m) * inv
            if v == t:
                p -= float32(1)
            dlogits[n, v] = p * scale
        if tx == 0:
            losses[n] = math.log(s) + m - logits[n, t]


def softmax_xent(logits, targets, dlogits, scale) -> float:
    """The summed cross-entropy (nats, float64) of rows of logits (N, V) against targets (N,);
    writes dlogits = (softmax - onehot) * scale. Per-row losses are summed on the host."""
    N, V = logits.shape
    if N == 0:
        return 0.0
    nt = 32
    while nt < 256 and nt * 4 < V:
        nt *= 2
    losses = _POOL.buffer("losses", (N,), np.float64)
    _xent[min(N, 65535), nt, 0, nt * 16](logits, targets, dlogits, np.float32(scale), losses)
    return float(losses.copy_to_host().sum())


@gpu_kernel
def _mul(x, y, out):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = x[i] * y[i]


def multiply(x, y, out):
    """out = x * y elementwise (contiguous arrays of one shape)."""
    if out.size:
        n = out.size
        _mul[grid_blocks(n), 256](x.reshape(n), y.reshape(n), out.reshape(n))


@gpu_kernel
def _adam(p, g, m, v, step_size, inv_c2, b1, b2, eps, scale):
    """cpu.adam_update's float32 update of each element (grid-stride)."""
    one = float32(1)
    for k in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        gk = g[k] * scale
        mk = b1 * m[k] + (one - b1) * gk
        vk = b2 * v[k] + (one - b2) * gk * gk
        m[k] = mk
        v[k] = vk
        p[k] -= step_size * mk / (math.sqrt(vk) * inv_c2 + eps)


def adam_update(p, g, m, v, lr, beta1, beta2, eps, step, scale):
    """torch.optim.Adam on flat (n,) buffers, the gradient multiplied by `scale` first; the bias
    corrections are computed in float64 on the host, as cpu.adam_update does."""
    n = p.shape[0]
    if n == 0:
        return
    step_size = np.float32(lr / (1.0 - beta1**step))
    inv_c2 = np.float32(1.0 / math.sqrt(1.0 - beta2**step))
    f = np.float32
    _adam[grid_blocks(n), 256](p, g, m, v, step_size, inv_c2, f(beta1), f(beta2), f(eps), f(scale))


@gpu_kernel
def _sumsq(x, partials):
    """partials[block] = the float64 sum of x[i]^2 over the block's elements (grid-stride)."""
    sh = cuda.shared.array(0, float64)
    tx = cuda.threadIdx.x
    acc = 0.0
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        acc += float64(x[i]) * x[i]
    sh[tx] = acc
    cuda.syncthreads()
    h = cuda.blockDim.x // 2
    while h > 0:  # halving, in a fixed order (blockDim.x is a power of two)
        if tx < h:
            sh[tx] += sh[tx + h]
        cuda.syncthreads()
        h //= 2
    if tx == 0:
        partials[cuda.blockIdx.x] = sh[0]


def sum_squares(x) -> float:
    """The sum of squares of x, in float64: a partial sum per block, added on the host."""
    n = x.size
    if n == 0:
        return 0.0
    blocks = grid_blocks(n, 256, 1024)
    partials = _POOL.buffer("sumsq", (blocks,), np.float64)
    _sumsq[blocks, 256, 0, 256 * 8](x.reshape(n), partials)
    return float(partials.copy_to_host().sum())


F1, F2, F3, I1, L2 = float32[::1], float32[:, ::1], float32[:, :, ::1], int64[::1], int32[:, ::1]
PTX = [
    (k.py_func.__name__, k.py_func, sig)
    for k, sig in [
        (_gemm, (F2, F2, F1, F3, F2) + (boolean,) * 4 + (int64,)),
        (_sum_parts, (F2, F1)),
        (_gather, (F2, I1, F2)),
        (_links, (I1, L2)),
        (_chain_sums, (I1, L2, F2, F2)),
        (_xent, (F2, I1, F2, float32, float64[::1])),
        (_mul, (F1, F1, F1)),
        (_adam, (F1,) * 4 + (float32,) * 6),
        (_sumsq, (F1, float64[::1])),
    ]
]
