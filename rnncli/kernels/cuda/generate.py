"""Generation on the GPU, the device side: a prompt fed, or n tokens sampled and fed back, in ONE
kernel launch (a launch costs 25-100 us, a token of a 2x128 model should cost ~20). The host side,
which lays out the launch, is cuda/decode.py; the sampler chain, cuda/sampler.py.

One block per row (rows are independent: no block waits for another); the token loop runs inside
the kernel. h and c stay in shared memory for the whole launch; gate pre-activations, logits and
weights in the row's global scratch (Rows.gx, gh, logits, probs; L1-cached), so the vocabulary is
not bounded by shared memory. Products (_matvec) read the pre-transposed (K, M) weights, so that
neighbouring threads read neighbouring columns; narrow products split k among several threads a
column, and each thread keeps 4 columns' loads in flight (one block is bound by load latency).
Phases are separated by cuda.syncthreads().

The kernel is cached on disk by its own file's stamp (numba's), not by the device functions it
inlines from cuda/sampler.py: an edit there must also change this file (or clear the cache) before
a cached kernel is trusted.
"""

import numpy as np
from numba import cuda, float32, float64, int64

from rnncli.kernels.cells import CSTATE, GATES, unit_forward
from rnncli.kernels.cuda.sampler import choose
from rnncli.kernels.jit import gpu_kernel

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


# --- the kernel ------------------------------------------------------------------------------------


@gpu_kernel
def generate(
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
            tok = choose(
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
