"""The CPU backend's compiled kernels: sequence drivers shared by all cells, and the products around
them. cpu.py wraps them in the kernel API that model.py calls (and that cuda.py mirrors).

All parallelism comes from one pool, Numba's threads, each calling single-threaded BLAS (through
blas.gemm) on its own share of the rows: two BLAS pools and Numba's busy-waiting against each other on
few cores cost more than they give. `parts` is the number of threads to share work among (calling
Numba's get_num_threads inside a kernel would keep it out of the disk cache). One driver per
direction runs the time loop in compiled code, each thread on its own slice of the batch (the
streams are independent), with one recurrent product (gemm.product: our own kernels or BLAS, by
the path rnncli/kernels/cpu/tune.py chose for the shape) and the cell's pointwise math (cells.py) per
step, allocating nothing.
For weights too large for one core's caches the `_cols` drivers share each step's product by columns
of W_hh instead (by BLAS or by the packed kernel, as measured), and wait for each other twice a
step (cpu._by_columns chooses). Arrays are float32.
"""

import numpy as np
from numba import prange

from rnncli.kernels.cells import backward_step, forward_step
from rnncli.kernels.cpu.blas import gemm
from rnncli.kernels.cpu.gemm import product
from rnncli.kernels.cpu.packed import matmul_packed, tile_n
from rnncli.kernels.jit import kernel


@kernel(inline=True)
def _share(n, parts, k):
    """Bounds of part k when n rows are cut into `parts` near-equal slices."""
    return k * n // parts, (k + 1) * n // parts


@kernel(inline=True)
def _share_lines(n, parts, k):
    """_share with the inner bounds rounded down to a multiple of 16 (a 64-byte cache line of
    float32), so that no two threads write the same line of a row."""
    lo = 0 if k == 0 else k * n // parts // 16 * 16
    hi = n if k == parts - 1 else (k + 1) * n // parts // 16 * 16
    return lo, hi


@kernel
def _forward_step_rows(cell, gx, b_hh, hs, cs, act, gh, t, b0, b1):
    """One step's cell math for rows b0..b1, gh holding their recurrent products."""
    forward_step(
        cell,
        gx[t, b0:b1],
        gh[b0:b1],
        b_hh,
        hs[t, b0:b1],
        cs[t, b0:b1],
        hs[t + 1, b0:b1],
        cs[t + 1, b0:b1],
        act[t, b0:b1],
    )


@kernel
def _backward_step_rows(cell, hs, cs, act, dhs, dh_next, dc_next, dgx, dgh, tmp, t, b0, b1, add):
    """One step of backward for rows b0..b1, first adding tmp (the step after's product) into dh_next
    if `add`."""
    if add:
        _add_into(dh_next, tmp, b0, b1)
    backward_step(
        cell,
        dhs[t, b0:b1],
        dh_next[b0:b1],
        dc_next[b0:b1],
        hs[t, b0:b1],
        hs[t + 1, b0:b1],
        cs[t, b0:b1],
        cs[t + 1, b0:b1],
        act[t, b0:b1],
        dgx[t, b0:b1],
        dgh[t, b0:b1],
    )


@kernel
def _add_into(out, x, b0, b1):
    for b in range(b0, b1):
        for j in range(out.shape[1]):
            out[b, j] += x[b, j]


@kernel
def _forward_rows(cell, gx, W_hh, W_hhT, b_hh, hs, cs, act, gh, b0, b1, path):
    """The time loop of sequence_forward for batch rows b0..b1 (kept out of the parallel function:
    Numba's parallel passes are slow to compile large bodies)."""
    for t in range(gx.shape[0]):
        product(hs[t, b0:b1], W_hh, W_hhT, gh[b0:b1], path)
        _forward_step_rows(cell, gx, b_hh, hs, cs, act, gh, t, b0, b1)


@kernel(parallel=True)
def sequence_forward(cell, gx, W_hh, W_hhT, b_hh, hs, cs, act, gh, parts, path):
    """Run one layer over T steps, each thread on its own slice of the batch.

    gx (T, B, G): W_ih x_t + b_ih for every step, from one matrix product before the loop.
    W_hh (G, H) and W_hhT (H, G), C-contiguous; each product goes by `path` (gemm.PATHS) and reads
    the one that path needs: W_hhT may be empty where it is not read, or have padded rows; b_hh (G,).
    hs, cs (T+1, B, H): row 0 holds h_0, c_0 on entry; rows 1..T are written.
    act (T, B, A) is filled for backward; gh (B, G) is scratch.
    """
    B = gx.shape[1]
    parts = min(parts, B)
    for k in prange(parts):
        b0, b1 = _share(B, parts, k)
        _forward_rows(cell, gx, W_hh, W_hhT, b_hh, hs, cs, act, gh, b0, b1, path)


@kernel
def _backward_rows(cell, W_hh, W_hhT, hs, cs, act, dhs, dh_next, dc_next, dgx, dgh, tmp, b0, b1, path):
    """The time loop of sequence_backward for batch rows b0..b1."""
    for t in range(dhs.shape[0] - 1, -1, -1):
        _backward_step_rows(cell, hs, cs, act, dhs, dh_next, dc_next, dgx, dgh, tmp, t, b0, b1, False)
        product(dgh[t, b0:b1], W_hhT, W_hh, tmp[b0:b1], path)
        _add_into(dh_next, tmp, b0, b1)


@kernel(parallel=True)
def sequence_backward(cell, W_hh, W_hhT, hs, cs, act, dhs, dh_next, dc_next, dgx, dgh, tmp, parts, path):
    """Backpropagate one layer through its T steps, last to first, each thread on its own slice
    of the batch.

    dhs (T, B, H): gradient reaching each output from above. dh_next, dc_next (B, H): on entry the
    gradient of h_T, c_T; on exit that of h_0, c_0. Writes dgx, dgh (T, B, G), the pre-activation
    gradients from which the caller forms every weight gradient with one product each. For rnn and
    lstm pass the same array as dgx and dgh. tmp (B, H) is scratch. W_hh, W_hhT as in
    sequence_forward, but W_hhT is the product's W here (read by the rows paths) and W_hh its WT.
    """
    B = dhs.shape[1]
    parts = min(parts, B)
    for k in prange(parts):
        b0, b1 = _share(B, parts, k)
        _backward_rows(cell, W_hh, W_hhT, hs, cs, act, dhs, dh_next, dc_next, dgx, dgh, tmp, b0, b1, path)


@kernel
def _column_parts(N, P, parts):
    """The threads sharing a product of N columns by columns: at most one a column, or a panel of
    P when the packed kernel runs it (P not empty)."""
    return min(parts, -(-N // tile_n()) if P.shape[0] > 0 else N)


@kernel
def _columns(A, W, transposed, P, C, by_cols, k):
    """Thread k's block of the columns of C = A @ W.T (A @ W if `transposed`), by_cols threads
    sharing them: by the packed kernel on its panels of P (packed.py) when P is not empty, else
    by BLAS on its rows of W (its columns if `transposed`), cut at cache lines."""
    if P.shape[0] > 0:
        p0, p1 = _share(-(-C.shape[1] // tile_n()), by_cols, k)
        matmul_packed(A, P, C, p0, p1)
    else:
        j0, j1 = _share_lines(C.shape[1], by_cols, k)
        if transposed:
            gemm(A, W[:, j0:j1], C[:, j0:j1])
        else:
            gemm(A, W[j0:j1].T, C[:, j0:j1])


@kernel(parallel=True)
def time_columns(A, W, P, C, reps, parts):
    """`reps` products C = A @ W.T shared by columns as sequence_forward_cols shares them, by the
    packed kernel if P is not empty, else by BLAS (rnncli/kernels/cpu/tune.py times this)."""
    by_cols = _column_parts(C.shape[1], P, parts)
    for _ in range(reps):
        for k in prange(by_cols):
            _columns(A, W, False, P, C, by_cols, k)


@kernel(parallel=True)
def sequence_forward_cols(cell, gx, W_hh, P, b_hh, hs, cs, act, gh, parts):
    """sequence_forward with each step in two parallel parts: the product shared by columns (each
    thread one block of W_hh's rows for all B rows at once: by the packed kernel on W_hh packed
    (P), or by BLAS if P is empty), then the cell's math by rows. Each thread then reads only its
    share of W_hh at every step, where the row split has every thread read all of it: for
    weights larger than the caches, half the memory traffic on two threads, and the product runs
    better on B rows than on B / parts. The price is two waits a step."""
    B, G = gh.shape
    by_cols, by_rows = _column_parts(G, P, parts), min(parts, B)
    for t in range(gx.shape[0]):
        for k in prange(by_cols):
            _columns(hs[t], W_hh, False, P, gh, by_cols, k)
        for k in prange(by_rows):
            b0, b1 = _share(B, by_rows, k)
            _forward_step_rows(cell, gx, b_hh, hs, cs, act, gh, t, b0, b1)


@kernel(parallel=True)
def sequence_backward_cols(cell, W_hh, P, hs, cs, act, dhs, dh_next, dc_next, dgx, dgh, tmp, parts):
    """sequence_backward split as sequence_forward_cols is: the cell's math by rows, then the
    product dgh_t @ W_hh by columns (each thread one block of W_hh's columns: by the packed
    kernel on W_hh.T packed (P), or by BLAS if P is empty)."""
    T = dhs.shape[0]
    B, H = tmp.shape
    by_cols, by_rows = _column_parts(H, P, parts), min(parts, B)
    for t in range(T - 1, -1, -1):
        for k in prange(by_rows):
            b0, b1 = _share(B, by_rows, k)
            _backward_step_rows(cell, hs, cs, act, dhs, dh_next, dc_next, dgx, dgh, tmp, t, b0, b1, t < T - 1)
        for k in prange(by_cols):
            _columns(dgh[t], W_hh, True, P, tmp, by_cols, k)
    if T > 0:
        for k in prange(by_rows):
            b0, b1 = _share(B, by_rows, k)
            _add_into(dh_next, tmp, b0, b1)


@kernel(parallel=True)
def matmul(A, Bm, bias, out, parts):
    """out = A @ Bm (+ bias on every row, unless bias is empty) for A (N, K) and out (N, M)
    C-contiguous, the rows shared among threads."""
    N = A.shape[0]
    parts = min(parts, N)
    for k in prange(parts):
        n0, n1 = _share(N, parts, k)
        gemm(A[n0:n1], Bm, out[n0:n1])
        if bias.shape[0] > 0:
            _add_rows(out, bias, n0, n1)


@kernel
def _add_rows(out, bias, n0, n1):
    for n in range(n0, n1):
        for m in range(bias.shape[0]):
            out[n, m] += bias[m]


@kernel(parallel=True)
def matmul_tn(A, Bm, out, colsum, scratch, colscratch):
    """out = A.T @ Bm and colsum = the column sums of A, for A (N, G), Bm (N, I): each thread sums its
    rows into its own scratch (P, G, I) and colscratch (P, G); the parts are added after."""
    N = A.shape[0]
    parts = scratch.shape[0]
    for k in prange(parts):
        n0, n1 = _share(N, parts, k)
        _partial_tn(A, Bm, scratch[k], colscratch[k], n0, n1)
    flat, flat_parts = out.reshape(out.size), scratch.reshape(parts, out.size)
    for k in prange(parts):
        m0, m1 = _share(out.size, parts, k)
        _sum_parts(flat_parts, flat, m0, m1)
    _sum_parts(colscratch, colsum, 0, colsum.shape[0])


@kernel
def _partial_tn(A, Bm, part, colpart, n0, n1):
    """part = A[n0:n1].T @ Bm[n0:n1]; colpart = the column sums of A[n0:n1]."""
    gemm(A[n0:n1].T, Bm[n0:n1], part)
    colpart[:] = 0.0
    for n in range(n0, n1):
        for g in range(A.shape[1]):
            colpart[g] += A[n, g]


@kernel
def _sum_parts(parts, out, m0, m1):
    """out[m] = the sum over q of parts[q, m], for m in m0..m1; parts (P, M), out (M,)."""
    for m in range(m1 - m0):
        out[m0 + m] = parts[0, m0 + m]
    for q in range(1, parts.shape[0]):
        for m in range(m1 - m0):
            out[m0 + m] += parts[q, m0 + m]


@kernel(parallel=True)
def gather_rows(table, ids, out, parts):
    """out[n] = table[ids[n]] for table (V, G), ids (N,), out (N, G)."""
    N = ids.shape[0]
    parts = min(parts, N)
    for k in prange(parts):
        n0, n1 = _share(N, parts, k)
        for n in range(n0, n1):
            row = ids[n]
            for g in range(out.shape[1]):
                out[n, g] = table[row, g]


@kernel(parallel=True)
def scatter_rows(ids, d, out, parts):
    """out[v] = the sum of d[n] over the n with ids[n] == v; d (N, G), out (V, G). Threads own
    column blocks, so no two write the same element."""
    G = d.shape[1]
    parts = min(parts, G)
    for k in prange(parts):
        g0, g1 = _share(G, parts, k)
        out[:, g0:g1] = 0.0
        for n in range(ids.shape[0]):
            row = ids[n]
            for g in range(g1 - g0):
                out[row, g0 + g] += d[n, g0 + g]


@kernel
def embedding_backward(ids, d_x, d_table):
    """d_table[ids[n]] += d_x[n] for every row n; ids (N,), d_x (N, E), d_table (V, E)."""
    for n in range(ids.shape[0]):
        row = ids[n]
        for e in range(d_x.shape[1]):
            d_table[row, e] += d_x[n, e]


@kernel(parallel=True)
def softmax_xent(logits, targets, dlogits, parts):
    """Summed cross-entropy of rows of logits (N, V) against targets (N,), in float64; writes
    dlogits = softmax - onehot (not yet divided by N)."""
    N, V = logits.shape
    parts = min(parts, N)
    totals = np.zeros(parts)
    for k in prange(parts):
        n0, n1 = _share(N, parts, k)
        acc = 0.0
        for n in range(n0, n1):
            m = logits[n, 0]
            for v in range(1, V):
                m = max(m, logits[n, v])
            s = 0.0
            for v in range(V):
                e = np.exp(logits[n, v] - m)
                dlogits[n, v] = e
                s += e
            inv = np.float32(1.0 / s)
            for v in range(V):
                dlogits[n, v] *= inv
            dlogits[n, targets[n]] -= np.float32(1.0)
            acc += np.log(s) + m - logits[n, targets[n]]
        totals[k] = acc
    return totals.sum()


@kernel(parallel=True)
def adam_update(p, g, m, v, lr, beta1, beta2, eps, step, scale):
    """torch.optim.Adam on flat buffers, the gradient multiplied by `scale` (clipping) first."""
    c1 = 1.0 - beta1**step
    c2 = 1.0 - beta2**step
    step_size = np.float32(lr / c1)
    inv_c2 = np.float32(1.0 / np.sqrt(c2))
    b1, b2 = np.float32(beta1), np.float32(beta2)
    one, e, s = np.float32(1.0), np.float32(eps), np.float32(scale)
    for k in prange(p.shape[0]):
        gk = g[k] * s
        m[k] = b1 * m[k] + (one - b1) * gk
        v[k] = b2 * v[k] + (one - b2) * gk * gk
        p[k] -= step_size * m[k] / (np.sqrt(v[k]) * inv_c2 + e)


@kernel(parallel=True)
def sum_squares(x, parts):
    """The sum of squares of x (n,), in float64, each thread over its own share."""
    totals = np.zeros(parts)
    for k in prange(parts):
        n0, n1 = _share(x.shape[0], parts, k)
        acc = 0.0
        for i in range(n0, n1):
            acc += np.float64(x[i]) * x[i]
        totals[k] = acc
    return totals.sum()
