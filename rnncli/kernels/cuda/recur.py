"""The CUDA recurrences: sequence_forward and sequence_backward, each layer's whole time loop in ONE
kernel launch (launches cost 25-100 us; a launch per step would cost more than most steps).

Design. Batch rows are independent, so each block owns a group of R (1..4) rows and runs every time
step for them alone: no block ever waits for another, no grid-wide sync is needed. A step is two
phases separated by cuda.syncthreads():
  product: the block's R state vectors (in shared memory) times the recurrent weights. Thread
           (s, c) of the S*C threads owns output columns c, c + C, ... and sums the s-th of S
           contiguous slices of k for all R rows at once (each weight read once for R rows),
           leaving S partial sums per output in shared memory. A warp's threads share s and read
           neighbouring columns of one weight row: coalesced. S > 1 gives small layers more threads.
  cells:   a thread per (row, hidden unit), all rows at once: adds the S partials, applies cells.py's per-unit
           functions (the cell table's), writes hs/cs/act (or the gradients) and the new state.
Forward reads W_hh^T (H, G), a copy refreshed by one transpose launch on every forward call (the
weights change every training step) and kept per layer in Scratch.store; backward reads W_hh
(G, H) itself, whose rows already are what its product runs along (dh_prev = dgh @ W_hh), so it
needs no scratch. The (T, B, .) arrays are passed flattened (fewer strides live in registers).

Occupancy (docs/gpu.md quotes this): grid = ceil(B / R) blocks, R = ceil(B / SMs) capped at 4, so
that up to 4 x SMs rows take one block per SM; S*C <= 512 threads per block (C = min(G, 512/S)
forward, min(H, 512/S) backward, S the largest power of two <= 8 with S times that many columns
<= 512, else 1: an LSTM of H = 128 runs 512 threads both ways); dynamic shared memory
4*R*(H + S*G) bytes forward and 4*R*(G + S*H) backward, kept <= 48 KiB by lowering R, then S
(R = S = 1 fits an LSTM up to H = 2457, a GRU to 3072, an RNN to 6144; beyond, ValueError). About
96 registers a thread (no spills, sm_80 and sm_90), so one 512-thread block per SM: past 4 x SMs
rows, blocks run in waves.
What limits speed: every block streams the whole W_hh (4*G*H bytes) from L2 on every step, so a
step costs at least that over ONE SM's L2 bandwidth, whatever B (rows 2..4 of a block come almost
free); the product is unrolled so that each thread keeps 4-8 weight loads in flight.

Device functions are inline="always" (inlined in Numba's IR): a kernel that calls a separately
compiled cuda device function cannot be compiled to PTX without a GPU (test_ptx.py does that).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import cuda, float32, int64

from rnncli.base.errors import RnncliError
from rnncli.kernels.cells import ACTS, CSTATE, GATES, unit_backward, unit_forward
from rnncli.kernels.jit import gpu_kernel

THREADS = 512  # threads per block aimed at (also keeps 1024-thread register limits out of reach)
SHARED = 48 * 1024  # dynamic shared memory a block may take without opting in to more
ROWS = 4  # most batch rows one block owns: the product keeps one accumulator per row
SLICES = 8  # most k-slices one output is split into
TILE = 32  # transpose tile


# --- device functions ----------------------------------------------------------------------------
@gpu_kernel(device=True)
def _quad(w0, w1, w2, w3, x, k, i1, i2, i3):
    """w0 * x[k] + w1 * x[k + 1] + w2 * x[k + 2] + w3 * x[k + 3] (i1, i2, i3: 1, 2, 3 unsigned)."""
    return w0 * x[k] + w1 * x[k + i1] + w2 * x[k + i2] + w3 * x[k + i3]


@gpu_kernel(device=True)
def _dots(W, col, x, xs, k0, k1, R):
    """For rows r < R (R <= 4): the sum over k0 <= k < k1 of W[k, col] * x[r * xs + k]; four
    values, those of rows >= R meaningless (R = 2, 3 repeat the last row).

    Unrolled by hand (8 weights a pass for one row, 4 for several), so that every thread keeps
    several weight loads in flight: each block streams all of W from L2 on every step, and with
    one block per SM only memory-level parallelism hides L2's latency. Consecutive k make the
    shared-memory reads immediate offsets of one address. The indices are unsigned (np.uint64,
    never mixed with signed integers, which would make floats), so that Numba adds no
    negative-index wraparound, which would cost more than the multiply-adds."""
    a0 = a1 = a2 = a3 = float32(0.0)
    u = np.uint64
    c, k, end = u(col), u(k0), u(k1)
    i1, i2, i3, i4 = u(1), u(2), u(3), u(4)
    if R == 1:
        x1 = x2 = x3 = u(0)
        i7, i8 = u(7), u(8)
        while k + i7 < end:
            a0 += _quad(W[k, c], W[k + i1, c], W[k + i2, c], W[k + i3, c], x, k, i1, i2, i3)
            k4 = k + i4
            a0 += _quad(W[k4, c], W[k4 + i1, c], W[k4 + i2, c], W[k4 + i3, c], x, k4, i1, i2, i3)
            k += i8
    else:
        x1, x2, x3 = u(xs), u(min(2, R - 1) * xs), u(min(3, R - 1) * xs)
        while k + i3 < end:
            w0, w1, w2, w3 = W[k, c], W[k + i1, c], W[k + i2, c], W[k + i3, c]
            a0 += _quad(w0, w1, w2, w3, x, k, i1, i2, i3)
            a1 += _quad(w0, w1, w2, w3, x, k + x1, i1, i2, i3)
            a2 += _quad(w0, w1, w2, w3, x, k + x2, i1, i2, i3)
            a3 += _quad(w0, w1, w2, w3, x, k + x3, i1, i2, i3)
            k += i4
    while k < end:  # the last few
        w = W[k, c]
        a0 += w * x[k]
        a1 += w * x[k + x1]
        a2 += w * x[k + x2]
        a3 += w * x[k + x3]
        k += i1
    return a0, a1, a2, a3


@gpu_kernel(device=True)
def _product(W, x, xs, part, s, c, C, k0, k1, R):
    """The product phase: part[(s*R + r) * N + n] = the k0 <= k < k1 share (slice s) of sum_k
    W[k, n] * x[r*xs + k], for the columns n = c, c + C, ... < N = W.shape[1] this thread owns
    and every row r < R."""
    N = W.shape[1]
    for n in range(c, N, C):
        a0, a1, a2, a3 = _dots(W, n, x, xs, k0, k1, R)
        o = s * R * N + n
        part[o] = a0
        if R > 1:
            part[o + N] = a1
        if R > 2:
            part[o + 2 * N] = a2
        if R > 3:
            part[o + 3 * N] = a3


@gpu_kernel(device=True)
def _sum(part, S, R, N, r, n):
    """The whole product for row r, column n: its S partial sums added (slice order)."""
    a = part[r * N + n]
    for s in range(1, S):
        a += part[(s * R + r) * N + n]
    return a


@gpu_kernel(device=True)
def _cell_forward(cell, part, S, R, r, H, G, j, x, y, gx, b_hh, h_prev, hs, cs, act):
    """Hidden unit j of one row at one step: cells.unit_forward on its gates' three parts, the table
    saying which slots the cell has; returns the new h. Flat arrays (see _forward): x = t * B + b
    numbers the (step, row) pair, y = x + B the next step's, so that gx[t, b, k] is gx[x * G + k],
    act[t, b, k] act[x * A + k], c_prev cs[x * H + j], and the new h and c hs and cs[y * H + j]."""
    g, n, A, zero = x * G + j, GATES[cell], ACTS[cell] * H, float32(0.0)
    x0, g0, b0 = gx[g], _sum(part, S, R, G, r, j), b_hh[j]
    x1 = g1 = b1 = x2 = g2 = b2 = x3 = g3 = b3 = zero
    if n > 1:
        x1, g1, b1 = gx[g + H], _sum(part, S, R, G, r, H + j), b_hh[H + j]
    if n > 2:
        x2, g2, b2 = gx[g + 2 * H], _sum(part, S, R, G, r, 2 * H + j), b_hh[2 * H + j]
    if n > 3:
        x3, g3, b3 = gx[g + 3 * H], _sum(part, S, R, G, r, 3 * H + j), b_hh[3 * H + j]
    c_prev = cs[x * H + j] if CSTATE[cell] > 0 else zero
    h, c, a0, a1, a2, a3 = unit_forward(cell, x0, x1, x2, x3, g0, g1, g2, g3, b0, b1, b2, b3, h_prev, c_prev)
    if CSTATE[cell] > 0:
        cs[y * H + j] = c
    if A > 0:
        a = x * A + j
        act[a] = a0
        act[a + H] = a1
        act[a + 2 * H] = a2
        act[a + 3 * H] = a3
    hs[y * H + j] = h
    return h


@gpu_kernel(device=True)
def _put(dgx, dgh, d_sh, g, q, vx, vh):
    """One pre-activation gradient: vx into dgx[g], vh into dgh[g] and into the shared copy d_sh[q]."""
    dgx[g] = vx
    dgh[g] = vh
    d_sh[q] = vh


@gpu_kernel(device=True)
def _cell_backward(cell, dh, H, G, j, x, y, n, q, hs, cs, act, dh_next, dc_next, dgx, dgh, d_sh):
    """Hidden unit j of one row at one step: cells.unit_backward from dh, the whole gradient of h.
    Writes dgx, dgh (both, so that one array or two both work) and their shared copy (from
    d_sh[q]), leaves in dh_next[n] the part of dh_prev that bypasses W_hh and in dc_next[n] that of
    c_prev. Flat arrays, x and y as in _cell_forward; n = b * H + j."""
    g, k, A, zero = x * G + j, GATES[cell], ACTS[cell] * H, float32(0.0)
    a0 = a1 = a2 = a3 = dc = c_prev = c = zero
    if A > 0:
        a = x * A + j
        a0, a1, a2, a3 = act[a], act[a + H], act[a + 2 * H], act[a + 3 * H]
    if CSTATE[cell] > 0:
        dc, c_prev, c = dc_next[n], cs[x * H + j], cs[y * H + j]
    d = unit_backward(cell, dh, dc, hs[x * H + j], hs[y * H + j], c_prev, c, a0, a1, a2, a3)
    _put(dgx, dgh, d_sh, g, q, d[0], d[4])
    if k > 1:
        _put(dgx, dgh, d_sh, g + H, q + H, d[1], d[5])
    if k > 2:
        _put(dgx, dgh, d_sh, g + 2 * H, q + 2 * H, d[2], d[6])
    if k > 3:
        _put(dgx, dgh, d_sh, g + 3 * H, q + 3 * H, d[3], d[7])
    dh_next[n] = d[8]
    if CSTATE[cell] > 0:
        dc_next[n] = d[9]


# --- kernels -------------------------------------------------------------------------------------
@gpu_kernel
def _transpose(W, WT):
    """WT = W.T for W (G, H), through 32 x 32 tiles in shared memory (33 floats a row, so that the
    column reads hit distinct banks), so that reads and writes are both coalesced.
    Block (32, rows), grid (ceil(H / 32), ceil(G / 32)), 32 * 33 floats of shared memory."""
    tile = cuda.shared.array(0, float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    k0, g0 = cuda.blockIdx.x * 32, cuda.blockIdx.y * 32
    for dy in range(ty, 32, cuda.blockDim.y):
        if g0 + dy < W.shape[0] and k0 + tx < W.shape[1]:
            tile[dy * 33 + tx] = W[g0 + dy, k0 + tx]
    cuda.syncthreads()
    for dy in range(ty, 32, cuda.blockDim.y):
        if k0 + dy < WT.shape[0] and g0 + tx < WT.shape[1]:
            WT[k0 + dy, g0 + tx] = tile[tx * 33 + dy]


@gpu_kernel
def _forward(cell, T, B, gx, WT, b_hh, hs, cs, act, R, S):
    """sequence_forward for the R batch rows of this block, all T steps. WT = W_hh.T (H, G); gx, hs,
    cs, act are the C-contiguous (T, B, G), (T+1, B, H), (T+1, B, H or 0), (T, B, 4H or 0) arrays
    flattened (flat indexing keeps fewer strides live in registers across the time loop).
    Shared memory: h (R, H), then the S partial sums of the product (S, R, G)."""
    sh = cuda.shared.array(0, float32)
    H, G = WT.shape
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    C = nt // S
    s, c = tid // C, tid % C
    k0, k1 = s * H // S, (s + 1) * H // S  # this thread's slice of the sum over k
    b0 = cuda.blockIdx.x * R
    rows = min(R, B - b0)
    h_sh = sh[: R * H]
    part = sh[R * H :]
    for i in range(tid, R * H, nt):
        h_sh[i] = hs[b0 * H + i] if i < rows * H else float32(0.0)
    cuda.syncthreads()
    for t in range(T):
        _product(WT, h_sh, H, part, s, c, C, k0, k1, R)
        cuda.syncthreads()
        for i in range(tid, rows * H, nt):  # (row, unit) pairs, all rows at once
            r = i // H
            x = t * B + b0 + r
            h_sh[i] = _cell_forward(
                cell, part, S, R, r, H, G, i - r * H, x, x + B, gx, b_hh, h_sh[i], hs, cs, act
            )
        cuda.syncthreads()


@gpu_kernel
def _backward(cell, T, B, W_hh, hs, cs, act, dhs, dh_next, dc_next, dgx, dgh, R, S):
    """sequence_backward for the R batch rows of this block, all T steps, last first. Every array
    but W_hh flattened, as in _forward (dhs, dgx, dgh from (T, B, H or G), dh_next, dc_next from
    (B, H)). Shared memory: this step's dgh (R, G), then the S partial sums of dgh @ W_hh (S, R, H),
    which the next step (or the end) adds into the gradient of h."""
    sh = cuda.shared.array(0, float32)
    G, H = W_hh.shape
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    C = nt // S
    s, c = tid // C, tid % C
    k0, k1 = s * G // S, (s + 1) * G // S  # this thread's slice of the sum over k
    b0 = cuda.blockIdx.x * R
    rows = min(R, B - b0)
    d_sh = sh[: R * G]
    part = sh[R * G :]
    for i in range(tid, R * G + S * R * H, nt):
        sh[i] = 0.0  # rows past B stay zero; the first step's recurrent gradient is zero
    cuda.syncthreads()
    for t in range(T - 1, -1, -1):
        for i in range(tid, rows * H, nt):  # (row, unit) pairs, all rows at once
            r = i // H
            j = i - r * H
            x = t * B + b0 + r
            n = b0 * H + i
            dh = (dh_next[n] + _sum(part, S, R, H, r, j)) + dhs[x * H + j]
            _cell_backward(
                cell, dh, H, G, j, x, x + B, n, r * G + j, hs, cs, act, dh_next, dc_next, dgx, dgh, d_sh
            )
        cuda.syncthreads()
        _product(W_hh, d_sh, G, part, s, c, C, k0, k1, R)
        cuda.syncthreads()
    for i in range(tid, rows * H, nt):
        r = i // H
        dh_next[b0 * H + i] += _sum(part, S, R, H, r, i - r * H)


# --- launches ------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _sm_count() -> int:
    """Streaming multiprocessors of the current device (132 where it cannot say: the simulator)."""
    try:
        return int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    except Exception:
        return 132


def plan(B: int, cols: int, fixed: int, per_slice: int) -> tuple[int, int, int]:
    """(R, S, threads) for B rows and a product with `cols` output columns; a block's shared memory
    is 4 * R * (fixed + S * per_slice) bytes. ValueError if even R = S = 1 does not fit."""
    S = 1
    while S < SLICES and 2 * S * cols <= THREADS:
        S *= 2
    R = max(1, min(ROWS, -(-B // _sm_count())))
    while R > 1 and 4 * R * (fixed + S * per_slice) > SHARED:
        R -= 1
    while S > 1 and 4 * R * (fixed + S * per_slice) > SHARED:
        S //= 2
    if 4 * R * (fixed + S * per_slice) > SHARED:
        raise RnncliError(
            f"--hidden is too large for the GPU's recurrence kernels ({4 * (fixed + per_slice)} "
            f"bytes of shared memory a batch row, {SHARED} at most); use --device cpu"
        )
    return R, S, S * min(cols, THREADS // S)


def _flat(a):
    """A C-contiguous array as the 1-D view the kernels index (never a copy: writes must land)."""
    if not a.is_c_contiguous():
        raise ValueError("the CUDA recurrence kernels need C-contiguous arrays")
    return a.reshape(a.size)


def _launch_forward(cell, gx, WT, b_hh, hs, cs, act, R, S, threads):
    T, B, _ = gx.shape
    H, G = WT.shape
    _forward[-(-B // R), threads, 0, 4 * R * (H + S * G)](
        cell, T, B, _flat(gx), WT, b_hh, _flat(hs), _flat(cs), _flat(act), R, S
    )


def _launch_backward(cell, W_hh, hs, cs, act, dhs, dh_next, dc_next, dgx, dgh, R, S, threads):
    T, B, _ = dhs.shape
    G, H = W_hh.shape
    f = _flat
    _backward[-(-B // R), threads, 0, 4 * R * (G + S * H)](
        cell, T, B, W_hh, f(hs), f(cs), f(act), f(dhs), f(dh_next), f(dc_next), f(dgx), f(dgh), R, S
    )


def transpose_into(W, WT) -> None:
    """WT (H, G) = W (G, H).T, on the device, one launch."""
    G, H = W.shape
    _transpose[(-(-H // TILE), -(-G // TILE)), (TILE, 8), 0, 4 * TILE * (TILE + 1)](W, WT)


def sequence_forward(scratch, layer: int, cell: int, gx, W_hh, b_hh, hs, cs, act, gh) -> None:
    """Run one layer over T steps, one launch (plus one for W_hh.T). gx (T, B, G) = W_ih x_t + b_ih;
    W_hh (G, H); b_hh (G,); hs, cs (T+1, B, H) with h_0, c_0 in row 0 (cs (T+1, B, 0) for rnn and
    gru); act (T, B, A) filled for backward. gh (B, G) is not needed here. Semantics: cpu's."""
    G, H = W_hh.shape
    WT = scratch.store.get(("W_hhT", layer))
    if WT is None or WT.shape != (H, G):
        WT = scratch.store[("W_hhT", layer)] = cuda.device_array((H, G), np.float32)
    transpose_into(W_hh, WT)
    if gx.shape[1] > 0:
        R, S, threads = plan(gx.shape[1], G, H, G)
        _launch_forward(cell, gx, WT, b_hh, hs, cs, act, R, S, threads)


def sequence_backward(
    scratch, layer: int, cell: int, W_hh, hs, cs, act, dhs, dh_next, dc_next, dgx, dgh, tmp
) -> None:
    """Backpropagate one layer through its T steps, one launch: dh_next, dc_next (B, H) hold the
    gradients of h_T, c_T on entry and of h_0, c_0 on exit; writes dgx, dgh (T, B, G) (one array
    or two for rnn and lstm; two for gru). Reads W_hh itself, so scratch and tmp are not needed."""
    G, H = W_hh.shape
    if dhs.shape[1] == 0:
        return
    R, S, threads = plan(dhs.shape[1], H, G, H)
    _launch_backward(cell, W_hh, hs, cs, act, dhs, dh_next, dc_next, dgx, dgh, R, S, threads)


# --- for tests/cuda/test_ptx.py: each kernel and one signature to compile ---------------------------
_f1, _f2 = float32[::1], float32[:, ::1]
PTX = [
    ("_transpose", _transpose.py_func, (_f2, _f2)),
    ("_forward", _forward.py_func, (int64, int64, int64, _f1, _f2, _f1, _f1, _f1, _f1, int64, int64)),
    ("_backward", _backward.py_func, (int64, int64, int64, _f2) + (_f1,) * 8 + (int64, int64)),
]
