"""Generation on the GPU: a prompt fed, or n tokens sampled and fed back, in ONE kernel launch
(a launch costs 25-100 us, a token of a 2x128 model should cost ~20).

One block per row (rows are independent: no block waits for another); the token loop runs inside
the kernel. h and c stay in shared memory for the whole launch; gate pre-activations, logits and
weights in the row's global scratch (Rows.gx, gh, logits, probs; L1-cached), so the vocabulary is
not bounded by shared memory. Products (_matvec) read the pre-transposed (K, M) weights, so that
neighbouring threads read neighbouring columns; narrow products split k among several threads a
column, and each thread keeps 4 columns' loads in flight (one block is bound by load latency).
Phases are separated by cuda.syncthreads(); block sums and maxima go through shared memory (no
warp shuffles, which the CUDA simulator lacks: it runs this same code).

The sampler chain keeps what sampling.choose keeps (reference.sample_probs's rules): top-k and
top-p find their boundary by a radix descent over the float32 logits' order-preserving integer
keys (8 rounds of a 16-bin shared histogram, any vocabulary size), top-p's masses summed as exact
fixed-point integers; ties at a boundary are resolved in id order, as a stable sort would. The
draw adds the weights in id order until the sum passes u * total, as sampling.draw does.

Limits. One block per row is one SM per row: at batch 1 a single SM streams every weight each
token: ~0.8 MB for a 2x128 LSTM (L2-resident), but 12.6 MB for a 2x512, which one SM cannot
stream in 20 us (~60 us or more at ~200 GB/s a SM). 50,000 chars/s there needs several blocks a
row (each owning a slice of the gate columns, its weights kept on chip, h exchanged through
global memory with a grid-wide barrier per layer: a cooperative launch). Occupancy: one block a
row, 256 threads (~165 registers each, no spills), shared memory 8 (T + 80) + 4 (4 T + L H +
L C + E) bytes for T threads (<= 48 KB without an opt-in).
"""

import math

import numpy as np
from numba import cuda, float32, float64, int32, int64
from numba.cuda.core import config as cuda_config

from rnncli.base.errors import RnncliError
from rnncli.kernels.cells import CSTATE, GATES, expneg32, unit_forward
from rnncli.kernels.jit import gpu_kernel
from rnncli.kernels.sampling import Sampling

SHARED_LIMIT = 48 * 1024  # dynamic shared memory a block may have without an opt-in
# threads per block: the kernel takes ~165 registers a thread (no spills at sm_90), so at most ~390
# threads fit a block's 64K registers; bounding it to 512 made ptxas spill
MAX_THREADS = 256
OFF = Sampling(1.0, 0, 1.0, 0.0, 0.0)  # the sampler settings feed passes (it samples nothing)


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


# --- the recurrent step ----------------------------------------------------------------------------


@gpu_kernel(device=True)
def _item(i, n, M, K, R):
    """Work item i: (column i % M, first and end row of slice i // M); empty past the last item."""
    if i >= n:
        return 0, 0, 0
    k0 = (i // M) * R
    return i % M, k0, min(K, k0 + R)


@gpu_kernel(device=True)
def _matvec(x, W, out, part, tid, nt):
    """out = x @ W, x (K,), W (K, M). Work items are (column, slice of rows), S slices a column so
    that there are about 4 nt items; thread tid runs items tid + q nt, q < 4, in one loop (4 loads
    in flight; neighbouring threads, neighbouring columns). Sliced columns' partial sums go through
    part (4 nt floats). Ends with a barrier: out is ready for every thread."""
    K, M = W.shape[0], W.shape[1]
    S = max(1, min(K, 4 * nt // M))
    R = (K + S - 1) // S
    n = M * S
    for i in range(tid, n, 4 * nt):
        c0, s0, e0 = _item(i, n, M, K, R)
        c1, s1, e1 = _item(i + nt, n, M, K, R)
        c2, s2, e2 = _item(i + 2 * nt, n, M, K, R)
        c3, s3, e3 = _item(i + 3 * nt, n, M, K, R)
        a0 = a1 = a2 = a3 = np.float32(0.0)
        for t in range(R):
            if s0 + t < e0:
                a0 += x[s0 + t] * W[s0 + t, c0]
            if s1 + t < e1:
                a1 += x[s1 + t] * W[s1 + t, c1]
            if s2 + t < e2:
                a2 += x[s2 + t] * W[s2 + t, c2]
            if s3 + t < e3:
                a3 += x[s3 + t] * W[s3 + t, c3]
        for q in range(4):
            if i + q * nt < n:
                a = a0 if q == 0 else a1 if q == 1 else a2 if q == 2 else a3
                if S == 1:
                    out[i + q * nt] = a
                else:
                    part[i + q * nt] = a
    cuda.syncthreads()
    if S > 1:
        for col in range(tid, M, nt):
            acc = part[col]
            for q in range(1, S):
                acc += part[q * M + col]
            out[col] = acc
        cuda.syncthreads()


@gpu_kernel(device=True)
def _pre(layer, q, tok, table0, gx, gh, b_ih, b_hh):
    """Pre-activation q's three parts, as cells.unit_forward takes them: input side (layer 0's table
    row, or the product plus b_ih), the recurrent product, and b_hh."""
    x = table0[tok, q] if layer == 0 and table0.shape[0] > 0 else gx[q] + b_ih[layer, q]
    return x, gh[q], b_hh[layer, q]


@gpu_kernel(device=True)
def _step(
    cell,
    tok,
    table0,
    emb,
    W_ih0T,
    W_ihT,
    W_hhT,
    b_ih,
    b_hh,
    W_outT,
    b_out,
    gx,
    gh,
    logits,
    hs,
    cs,
    x,
    part,
    tid,
    nt,
):
    """decode.step for one row: every layer advanced by token tok (h, c in shared hs (L H,), cs
    (L C,)), the next logits left in `logits`."""
    L, H = W_hhT.shape[0], W_hhT.shape[1]
    for layer in range(L):
        h_l = hs[layer * H : (layer + 1) * H]
        _matvec(h_l, W_hhT[layer], gh, part, tid, nt)
        if layer > 0:
            _matvec(hs[(layer - 1) * H : layer * H], W_ihT[layer - 1], gx, part, tid, nt)
        elif table0.shape[0] == 0:
            for e in range(tid, x.shape[0], nt):
                x[e] = emb[tok, e]
            cuda.syncthreads()
            _matvec(x, W_ih0T, gx, part, tid, nt)
        n, zero = GATES[cell], np.float32(0.0)
        for j in range(tid, H, nt):  # unit j reads its own gates and writes its own h, c
            x0, g0, b0 = _pre(layer, j, tok, table0, gx, gh, b_ih, b_hh)
            x1 = g1 = b1 = x2 = g2 = b2 = x3 = g3 = b3 = zero
            if n > 1:
                x1, g1, b1 = _pre(layer, H + j, tok, table0, gx, gh, b_ih, b_hh)
            if n > 2:
                x2, g2, b2 = _pre(layer, 2 * H + j, tok, table0, gx, gh, b_ih, b_hh)
            if n > 3:
                x3, g3, b3 = _pre(layer, 3 * H + j, tok, table0, gx, gh, b_ih, b_hh)
            c_prev = cs[layer * H + j] if CSTATE[cell] > 0 else zero
            h, c, _, _, _, _ = unit_forward(
                cell, x0, x1, x2, x3, g0, g1, g2, g3, b0, b1, b2, b3, h_l[j], c_prev
            )
            if CSTATE[cell] > 0:
                cs[layer * H + j] = c
            h_l[j] = h
        cuda.syncthreads()
    _matvec(hs[(L - 1) * H : L * H], W_outT, logits, part, tid, nt)
    for v in range(tid, logits.shape[0], nt):
        logits[v] += b_out[v]
    cuda.syncthreads()


@gpu_kernel(device=True)
def _push(b, tok, toks, recent, counts, seen):
    """Token tok joins row b's ring (pushing out the one R tokens back), as decode.step. Thread 0."""
    R = recent.shape[1]
    if R > 0:
        at = seen[b] % R
        if seen[b] >= R:
            counts[b, recent[b, at]] -= 1
        recent[b, at] = tok
        counts[b, tok] += 1
    seen[b] += 1
    toks[b] = tok


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
def _choose(
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


# --- the kernel ------------------------------------------------------------------------------------


@gpu_kernel
def _kernel(
    cell,
    prompt,
    penalty,
    top_k,
    top_p,
    min_p,
    temperature,
    uniforms,
    out,
    table0,
    emb,
    W_ih0T,
    W_ihT,
    W_hhT,
    b_ih,
    b_hh,
    W_outT,
    b_out,
    h,
    c,
    toks,
    gx,
    gh,
    logits,
    bits,
    probs,
    wts,
    recent,
    counts,
    seen,
):
    """Block b feeds `prompt` to row b, then samples out[:, b] from it, feeding each token back.
    bits: the logits' int32 view. Shared memory: nt + 80 eight-byte slots (reductions, histograms),
    then float32 part (4 nt), h (L H), c (L C), x (E)."""
    b, tid, nt = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
    L, H, C, P = h.shape[0], h.shape[2], c.shape[2], prompt.shape[0]
    r64, ri64 = cuda.shared.array(0, float64), cuda.shared.array(0, int64)
    f32 = cuda.shared.array(0, float32)
    o = 2 * (nt + 80) + 4 * nt
    part, hs, cs, x = (
        f32[o - 4 * nt : o],
        f32[o : o + L * H],
        f32[o + L * H : o + L * (H + C)],
        f32[o + L * (H + C) :],
    )
    for i in range(tid, L * H, nt):
        hs[i] = h[i // H, b, i % H]
    for i in range(tid, L * C, nt):
        cs[i] = c[i // C, b, i % C]
    cuda.syncthreads()
    for i in range(P + out.shape[0]):
        if i < P:
            tok = prompt[i]
        else:
            tok = _choose(
                b,
                uniforms[i - P, b],
                penalty,
                top_k,
                top_p,
                min_p,
                temperature,
                logits[b],
                bits[b],
                counts,
                probs[b],
                wts[b],
                r64,
                ri64,
                ri64[nt + 32 : nt + 80],
                tid,
                nt,
            )
        if tid == 0:
            if i >= P:
                out[i - P, b] = tok
            _push(b, tok, toks, recent, counts, seen)
        _step(
            cell,
            tok,
            table0,
            emb,
            W_ih0T,
            W_ihT,
            W_hhT,
            b_ih,
            b_hh,
            W_outT,
            b_out,
            gx[b],
            gh[b],
            logits[b],
            hs,
            cs,
            x[: emb.shape[1]],
            part,
            tid,
            nt,
        )
    for i in range(tid, L * H, nt):
        h[i // H, b, i % H] = hs[i]
    for i in range(tid, L * C, nt):
        c[i // C, b, i % C] = cs[i]


# --- host side -------------------------------------------------------------------------------------


class DecodePlan:
    """Threads per block (lowered at the first launch to what the kernel's registers allow) and
    device buffers kept between calls (uniforms, out, top-p weights, empty stand-ins)."""

    def __init__(self, threads: int):
        self.threads, self.fitted, self._buffers = threads, False, {}

    def buffer(self, name: str, shape, dtype):
        a = self._buffers.get(name)
        if a is None or a.shape != tuple(shape) or a.dtype != dtype:
            a = self._buffers[name] = cuda.device_array(shape, dtype)
        return a


def prepare_decoding(model_cfg, rows: int, n_threads: int | None, *, block: int | None = None) -> DecodePlan:
    """The plan for `rows` rows (one block each; `n_threads`, the CPU's thread count, is unused).
    block: threads per block, a multiple of 32 (default MAX_THREADS)."""
    nt = block or MAX_THREADS
    if nt % 32 or not 32 <= nt <= 1024:
        raise ValueError(f"threads per block must be a multiple of 32 in [32, 1024], not {nt}")
    return DecodePlan(nt)


def _launch(plan: DecodePlan, cell, w, h, c, r, prompt, s, uniforms, out) -> None:
    """The kernel over every row: a block each, shared memory as _kernel lays it out."""
    args = (
        int(cell),
        prompt,
        float(s.penalty),
        int(s.top_k),
        float(s.top_p),
        float(s.min_p),
        float(s.temperature),
        uniforms,
        out,
        w.table0,
        w.emb,
        w.W_ih0T,
        w.W_ihT,
        w.W_hhT,
        w.b_ih,
        w.b_hh,
        w.W_outT,
        w.b_out,
        h,
        c,
        r.toks,
        r.gx,
        r.gh,
        r.logits,
        r.logits.view(np.int32),
        r.probs,
        plan.buffer(f"wts {h.shape[1]}", r.logits.shape, np.int64),
        r.recent,
        r.counts,
        r.seen,
    )
    if not plan.fitted:
        if not cuda_config.ENABLE_CUDASIM:  # (the simulator knows no registers)
            # the overload the launch below uses (loaded from the disk cache when there): specialize()
            # would compile the kernel a second time, ~30 s, never cached, in every process
            compiled = _kernel.compile(tuple(_kernel.typeof_pyval(a) for a in args))
            plan.threads = min(plan.threads, compiled.max_threads_per_block // 32 * 32)
        plan.fitted = True
    nt, (L, B, H), C, E = plan.threads, h.shape, c.shape[2], w.emb.shape[1]
    nbytes = 8 * (nt + 80) + 4 * (4 * nt + L * (H + C) + E)
    if nbytes > SHARED_LIMIT:
        raise RnncliError(
            f"the GPU decoder keeps h and c in shared memory: {nbytes} bytes for {L}x{H} at {nt} "
            f"threads a block, over {SHARED_LIMIT}; use --device cpu"
        )
    _kernel[B, nt, 0, nbytes](*args)


def feed(plan: DecodePlan, cell: int, w, h, c, r, prompt) -> None:
    """Feed prompt ids (P,) (host or device) to every row, one token a step, in one launch."""
    if len(prompt) == 0:
        return
    if isinstance(prompt, np.ndarray):
        prompt = cuda.to_device(np.ascontiguousarray(prompt, np.int64))
    B = h.shape[1]
    _launch(
        plan,
        cell,
        w,
        h,
        c,
        r,
        prompt,
        OFF,
        plan.buffer("no u", (0, B), np.float64),
        plan.buffer("no out", (0, B), np.int64),
    )


def decode(plan: DecodePlan, cell: int, w, h, c, r, s, uniforms, out) -> None:
    """Sample out.shape[0] tokens for every row (out (n, B) int64 on the host, filled; uniforms
    (n, B) float64 on the host), as kernels/decode.decode does, in one launch."""
    n, B = out.shape
    if n == 0:
        return
    d_u = plan.buffer("uniforms", (n, B), np.float64)
    d_u.copy_to_device(np.ascontiguousarray(uniforms, np.float64))
    d_out = plan.buffer("out", (n, B), np.int64)
    _launch(plan, cell, w, h, c, r, plan.buffer("no prompt", (0,), np.int64), s, d_u, d_out)
    d_out.copy_to_host(out)


def _types():
    """One signature of the kernel, as decode and feed launch it (C-contiguous arrays)."""
    f1, f2, f3, i1, i2 = float32[::1], float32[:, ::1], float32[:, :, ::1], int64[::1], int64[:, ::1]
    f = float64
    return (
        int64,
        i1,
        f,
        int64,
        f,
        f,
        f,
        float64[:, ::1],
        i2,
        f2,
        f2,
        f2,
        f3,
        f3,
        f2,
        f2,
        f2,
        f1,
        f3,
        f3,
        i1,
        f2,
        f2,
        f2,
        int32[:, ::1],
        f2,
        i2,
        i2,
        int32[:, ::1],
        i1,
    )


PTX = [("decode", _kernel.py_func, _types())]
