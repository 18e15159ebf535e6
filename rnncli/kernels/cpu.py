"""The CPU backend: compiled sequence drivers shared by all cells, and the small kernels around them.

One driver per direction: the time loop runs inside compiled code, each step one recurrent matrix
product (BLAS through np.dot, no allocation) and the cell's pointwise math from cells.py. Arrays
are float32 and C-contiguous; weights arrive transposed where a product needs them so (F-order).
"""
import numpy as np

from rnncli.kernels.cells import backward_step, forward_step
from rnncli.kernels.jit import kernel


@kernel
def sequence_forward(cell, gx, W_hhT, b_hh, hs, cs, act, gh):
    """Run one layer over T steps.

    gx (T, B, G): W_ih x_t + b_ih for every step, from one matrix product before the loop.
    W_hhT (H, G); b_hh (G,). hs, cs (T+1, B, H): row 0 holds h_0, c_0 on entry; rows 1..T are written.
    act (T, B, A) is filled for backward; gh (B, G) is scratch.
    """
    for t in range(gx.shape[0]):
        np.dot(hs[t], W_hhT, gh)
        forward_step(cell, gx[t], gh, b_hh, hs[t], cs[t], hs[t + 1], cs[t + 1], act[t])


@kernel
def sequence_backward(cell, W_hh, hs, cs, act, dhs, dh_next, dc_next, dgx, dgh, tmp):
    """Backpropagate one layer through its T steps, last to first.

    dhs (T, B, H): gradient reaching each output from above. dh_next, dc_next (B, H): on entry the
    gradient of h_T, c_T; on exit that of h_0, c_0. Writes dgx, dgh (T, B, G), the pre-activation
    gradients from which the caller forms every weight gradient with one product each. For rnn and
    lstm pass the same array as dgx and dgh. tmp (B, H) is scratch.
    """
    for t in range(dhs.shape[0] - 1, -1, -1):
        backward_step(cell, dhs[t], dh_next, dc_next, hs[t], hs[t + 1], cs[t], cs[t + 1], act[t], dgx[t], dgh[t])
        np.dot(dgh[t], W_hh, tmp)
        dh_next += tmp


@kernel
def embedding_backward(ids, d_x, d_table):
    """d_table[ids[n]] += d_x[n] for every row n; ids (N,), d_x (N, E), d_table (V, E)."""
    for n in range(ids.shape[0]):
        row = ids[n]
        for e in range(d_x.shape[1]):
            d_table[row, e] += d_x[n, e]


@kernel(parallel=False)
def softmax_xent(logits, targets, dlogits):
    """Summed cross-entropy of rows of logits (N, V) against targets (N,), in float64; writes
    dlogits = softmax - onehot (not yet divided by N)."""
    N, V = logits.shape
    total = 0.0
    for n in range(N):
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
        total += np.log(s) + m - logits[n, targets[n]]
    return total


@kernel
def adam_update(p, g, m, v, lr, beta1, beta2, eps, step, scale):
    """torch.optim.Adam on flat buffers, the gradient multiplied by `scale` (clipping) first."""
    c1 = 1.0 - beta1**step
    c2 = 1.0 - beta2**step
    step_size = np.float32(lr / c1)
    inv_c2 = np.float32(1.0 / np.sqrt(c2))
    b1, b2 = np.float32(beta1), np.float32(beta2)
    one, e, s = np.float32(1.0), np.float32(eps), np.float32(scale)
    for k in range(p.shape[0]):
        gk = g[k] * s
        m[k] = b1 * m[k] + (one - b1) * gk
        v[k] = b2 * v[k] + (one - b2) * gk * gk
        p[k] -= step_size * m[k] / (np.sqrt(v[k]) * inv_c2 + e)


@kernel
def sum_squares(x):
    s = 0.0
    for k in range(x.shape[0]):
        s += np.float64(x[k]) * x[k]
    return s
