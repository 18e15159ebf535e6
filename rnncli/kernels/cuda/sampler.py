"""The sampler chain on the GPU, for one row in one block (the generation kernel, cuda/generate.py,
calls `choose` once a token): it keeps what sampling.choose keeps (reference.sample_probs's rules).

Top-k and top-p find their boundary by a radix descent over the float32 logits' order-preserving
integer keys (8 rounds of a 16-bin shared histogram, any vocabulary size), top-p's masses summed as
exact fixed-point integers; ties at a boundary are resolved in id order, as a stable sort would. The
draw adds the weights in id order until the sum passes u * total, as sampling.draw does. Block sums
and maxima go through shared memory (no warp shuffles, which the CUDA simulator lacks: it runs this
same code).
"""

import math

import numpy as np
from numba import cuda

from rnncli.kernels.cells import expneg32
from rnncli.kernels.jit import gpu_kernel

# --- block-wide helpers: every thread of the block must call them (they hold barriers) -------------


@gpu_kernel(device=True)
def _reduce(x, red, tid, nt, op):
    """Block-wide sum (op 0) or max (op 1) of each thread's x; every thread gets the result.
    red: nt + 32 slots of x's type in shared memory. nt is a multiple of 32."""
    red[tid] = x
    cuda.syncthreads()
    if tid < 32:
        acc = red[tid]
        for i in range(tid + 32, nt, 32):
            acc = acc + red[i] if op == 0 else max(acc, red[i])
        red[nt + tid] = acc
    cuda.syncthreads()
    acc = red[nt]
    for i in range(1, 32):
        acc = acc + red[nt + i] if op == 0 else max(acc, red[nt + i])
    return acc


@gpu_kernel(device=True)
def _scan(x, red, tid, nt):
    """(sum of x over the threads before this one, sum over all): groups of nt / 32 threads."""
    red[tid] = x
    cuda.syncthreads()
    w = nt // 32
    if tid < 32:
        acc = 0.0
        for i in range(tid * w, (tid + 1) * w):
            acc += red[i]
        red[nt + tid] = acc
    cuda.syncthreads()
    before, total = 0.0, 0.0
    for i in range(32):
        before += red[nt + i] if i < tid // w else 0.0
        total += red[nt + i]
    for i in range(tid // w * w, tid):
        before += red[i]
    cuda.syncthreads()  # (other threads' slots were read: none is rewritten before all are done)
    return before, total


@gpu_kernel(device=True)
def _key(bits):
    """An int64 that orders as the float32 whose bits (int32) are given does (-0.0 as +0.0)."""
    k = np.int64(bits)
    return k if k >= 0 else np.int64(0) if k == -2147483648 else k ^ 0x7FFFFFFF


# --- the sampler chain -----------------------------------------------------------------------------


@gpu_kernel(device=True)
def _select(bits, vals, weighed, target, hist, tid, nt):
    """Radix descent over the logits' keys, 4 bits a round (8 rounds, one barrier each): the key t
    whose larger keys' tokens hold less than target, and with t's reach it (each token holds 1, or
    vals[v] when weighed; then target is a fraction of the total). Returns (t, held above t, held
    at t, target). hist: 3 x 16 int64 bins in turn, each cleared a round before it is filled."""
    V = bits.shape[0]
    if tid < 16:
        hist[tid] = 0
    cuda.syncthreads()
    prefix, above, at = np.int64(0), np.int64(0), np.int64(0)
    for r in range(8):
        now, shift = (r % 3) * 16, 28 - 4 * r
        for v in range(tid, V, nt):
            u = _key(bits[v]) + 2147483648
            if (u >> (shift + 4)) == prefix:
                cuda.atomic.add(hist, now + ((u >> shift) & 15), vals[v] if weighed else 1)
        if tid < 16:
            hist[((r + 1) % 3) * 16 + tid] = 0
        cuda.syncthreads()
        if r == 0 and weighed:
            total = np.int64(0)
            for d in range(16):
                total += hist[d]
            target *= np.float64(total)
        d = 15
        while d > 0 and np.float64(above + hist[now + d]) < target:
            above += hist[now + d]
            d -= 1
        at = hist[now + d]
        prefix = prefix * 16 + d
    return prefix - 2147483648, above, at, target


@gpu_kernel(device=True)
def _cut(z, bits, vals, weighed, target, r64, hist, tid, nt):
    """Keep the tokens whose predecessors in the stable descending order (larger logits, then lower
    ids) hold less than target: top-k (each token holds 1, target k) or, weighed, top-p (vals,
    target p of their total). The boundary key by _select; tokens tied at it (when several) walked
    in id order by thread 0 (exact ties are rare)."""
    V = z.shape[0]
    t, above, _, target = _select(bits, vals, weighed, target, hist, tid, nt)
    n = 0.0
    for v in range(tid, V, nt):
        n += 1.0 if _key(bits[v]) == t else 0.0
    if _reduce(n, r64, tid, nt, 0) > 1.0 and tid == 0:
        for v in range(V):
            if _key(bits[v]) == t:
                if np.float64(above) >= target:
                    z[v] = -math.inf
                above += vals[v] if weighed else 1
    for v in range(tid, V, nt):
        if _key(bits[v]) < t:
            z[v] = -math.inf
    cuda.syncthreads()


@gpu_kernel(device=True)
def choose(
    b, u, penalty, top_k, top_p, min_p, temperature, z, bits, counts, probs, wts, r64, ri64, hist, tid, nt
):
    """Row b's token from its logits z (cut in place, as sampling.choose); the same on every thread."""
    V = z.shape[0]
    if penalty != 1.0 and counts.shape[1] == V:
        p = np.float32(penalty)
        for v in range(tid, V, nt):
            if counts[b, v] > 0:
                x = z[v]
                z[v] = x / p if x > 0 else x * p
        cuda.syncthreads()
    if 0 < top_k < V:
        _cut(z, bits, wts, False, np.float64(top_k), r64, hist, tid, nt)
    best = np.int64(-9223372036854775807)  # the largest key, the lowest id among equals
    for v in range(tid, V, nt):
        best = max(best, (_key(bits[v]) << 32) + (2147483647 - v))
    best = 2147483647 - (_reduce(best, ri64, tid, nt, 1) & 0xFFFFFFFF)
    top = z[best]
    if top_p < 1.0:  # masses exp(z - top) as exact fixed-point int64 (2^62 / V a unit): the same sums
        scale = 4611686018427387904.0 / V  # in any order, within ~1e-15 of the top's weight a token
        for v in range(tid, V, nt):  # (_cut reads back each thread's own tokens first)
            wts[v] = np.int64(math.exp(np.float64(z[v]) - np.float64(top)) * scale)
        _cut(z, bits, wts, True, top_p, r64, hist, tid, nt)
    if min_p > 0.0:
        floor = math.log(min_p)
        for v in range(tid, V, nt):
            if np.float64(z[v]) - np.float64(top) < floor:
                z[v] = -math.inf
        cuda.syncthreads()
    if temperature <= 0.0:
        return best
    inv_t = np.float32(1.0 / temperature)
    chunk = (V + nt - 1) // nt  # thread tid weighs ids [v0, v1), then finds the draw in them
    v0, v1 = min(V, tid * chunk), min(V, (tid + 1) * chunk)
    s = 0.0
    for v in range(v0, v1):
        w = expneg32((z[v] - top) * inv_t)
        probs[v] = w
        s += w
    cum, total = _scan(s, r64, tid, nt)
    target = u * total
    found = V
    for v in range(v0, v1):
        cum += probs[v]
        if cum > target and probs[v] > 0.0:
            found = v
            break
    found = -_reduce(-np.int64(found), ri64, tid, nt, 1)
    return best if found == V else found
