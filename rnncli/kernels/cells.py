"""Pointwise math of the three cells, float32, inlined into the sequence drivers of `cpu.py`.

Everything here is per element; the matrix products live in the drivers. Cell codes follow
config.CELLS: 0 rnn, 1 gru, 2 lstm. `act` caches what backward needs, per cell:
  gru: r, z, n, hn (hn = W_hn h + b_hn)   lstm: i, f, g, o (after their nonlinearities)   rnn: nothing.
The equations are in reference.py; this file follows them line for line.
"""
import numpy as np

from rnncli.kernels.jit import kernel


@kernel(inline=True)
def tanh32(x):
    """tanh to ~3e-7 absolute error with a rational minimax fit on [-7.9, 7.9] (beyond, tanh is
    +-1 in float32). Pure arithmetic, so LLVM vectorizes it: ~0.3 ns an element against ~15 ns for
    math.tanh, which numba calls through libm without SVML."""
    c = np.float32(7.90531110763549805)
    x = c if x > c else x
    x = -c if x < -c else x
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return x * p / q


@kernel(inline=True)
def sigmoid32(x):
    """s(x) = (1 + tanh(x / 2)) / 2, exact identity; inherits tanh32's accuracy."""
    half = np.float32(0.5)
    return half + half * tanh32(half * x)


@kernel(inline=True)
def expneg32(x):
    """exp(x) for x <= 0 (-inf too), as (1 + t) / (1 - t) with t = tanh32(x / 2): within ~3e-7 of
    exp(x), never negative, and pure arithmetic, so that LLVM vectorizes it (np.exp is a libm call
    an element, ~7 ns). The sampler weighs tokens with it."""
    t = tanh32(np.float32(0.5) * x)
    w = (np.float32(1.0) + t) / (np.float32(1.0) - t)
    # below -15.8 tanh32 is clamped (exp is under 1.4e-7 there): exactly 0, so that a token cut
    # to -inf can never be drawn
    return w if w > np.float32(0.0) and x > np.float32(-15.8) else np.float32(0.0)


@kernel
def forward_step(cell, gx, gh, b_hh, h_prev, c_prev, h, c, act):
    """One time step for all rows. gx = W_ih x + b_ih (B, G); gh = W_hh h_prev (B, G) without bias,
    overwritten. Writes h (B, H) and, for the lstm, c; fills act. h may be h_prev and c may be
    c_prev (generation updates in place).

    For speed, every loop counts j from 0 (so LLVM knows indices are >= 0 and needs no wraparound)
    and writes one block of one array without reading another block of that array (so it can
    prove the accesses apart): LLVM then vectorizes each loop."""
    B, H = h.shape
    one = np.float32(1.0)
    for b in range(B):
        if cell == 0:
            for j in range(H):
                h[b, j] = tanh32(gx[b, j] + gh[b, j] + b_hh[j])
        elif cell == 1:
            for j in range(3 * H):
                gh[b, j] += b_hh[j]
            for j in range(2 * H):  # r, z
                act[b, j] = sigmoid32(gx[b, j] + gh[b, j])
            for j in range(H):  # hn = W_hn h + b_hn, kept for backward
                act[b, 3 * H + j] = gh[b, 2 * H + j]
            for j in range(H):  # n, first into gh's n block
                gh[b, 2 * H + j] = tanh32(gx[b, 2 * H + j] + act[b, j] * gh[b, 2 * H + j])
            for j in range(H):
                act[b, 2 * H + j] = gh[b, 2 * H + j]
            for j in range(H):
                z = act[b, H + j]
                h[b, j] = (one - z) * gh[b, 2 * H + j] + z * h_prev[b, j]
        else:
            for j in range(4 * H):
                gh[b, j] += gx[b, j] + b_hh[j]
            for j in range(2 * H):  # i, f
                act[b, j] = sigmoid32(gh[b, j])
            for j in range(H):  # g
                act[b, 2 * H + j] = tanh32(gh[b, 2 * H + j])
            for j in range(H):  # o
                act[b, 3 * H + j] = sigmoid32(gh[b, 3 * H + j])
            for j in range(H):
                cn = act[b, H + j] * c_prev[b, j] + act[b, j] * act[b, 2 * H + j]
                c[b, j] = cn
                h[b, j] = act[b, 3 * H + j] * tanh32(cn)


@kernel
def backward_step(cell, dh_out, dh_next, dc_next, h_prev, h, c_prev, c, act, dgx, dgh):
    """Chain rule through one step. dh = dh_out + dh_next is the gradient of h; dc_next that of c.
    Writes the pre-activation gradients: dgx (input side) and dgh (recurrent side; the same array
    for rnn and lstm, different only in the gru's n block). Leaves in dh_next the part of the
    gradient of h_prev that bypasses W_hh (gru: dh * z; others 0) and in dc_next that of c_prev.
    Loops are shaped as in forward_step, one written block each, so that they vectorize."""
    B, H = h.shape
    one = np.float32(1.0)
    for b in range(B):
        for j in range(H):
            dh_next[b, j] += dh_out[b, j]  # now the whole gradient of h
        if cell == 0:
            for j in range(H):
                hj = h[b, j]
                dgx[b, j] = dh_next[b, j] * (one - hj * hj)
            for j in range(H):
                dh_next[b, j] = 0.0
        elif cell == 1:
            for j in range(H):  # dan, through n = tanh(.)
                z, n = act[b, H + j], act[b, 2 * H + j]
                dgx[b, 2 * H + j] = dh_next[b, j] * (one - z) * (one - n * n)
            for j in range(H):  # daz
                z, n = act[b, H + j], act[b, 2 * H + j]
                dgx[b, H + j] = dh_next[b, j] * (h_prev[b, j] - n) * z * (one - z)
            for j in range(H):  # dar = dan * hn * r * (1 - r)
                r, z, n, hn = act[b, j], act[b, H + j], act[b, 2 * H + j], act[b, 3 * H + j]
                dgx[b, j] = dh_next[b, j] * (one - z) * (one - n * n) * hn * r * (one - r)
            for j in range(2 * H):
                dgh[b, j] = dgx[b, j]
            for j in range(H):
                dgh[b, 2 * H + j] = dgx[b, 2 * H + j] * act[b, j]
            for j in range(H):
                dh_next[b, j] *= act[b, H + j]
        else:
            for j in range(H):  # do, and dc_next becomes the whole gradient of c
                o, tc = act[b, 3 * H + j], tanh32(c[b, j])
                dgx[b, 3 * H + j] = dh_next[b, j] * tc * o * (one - o)
                dc_next[b, j] += dh_next[b, j] * o * (one - tc * tc)
            for j in range(H):  # di
                i, g = act[b, j], act[b, 2 * H + j]
                dgx[b, j] = dc_next[b, j] * g * i * (one - i)
            for j in range(H):  # df
                f = act[b, H + j]
                dgx[b, H + j] = dc_next[b, j] * c_prev[b, j] * f * (one - f)
            for j in range(H):  # dg
                i, g = act[b, j], act[b, 2 * H + j]
                dgx[b, 2 * H + j] = dc_next[b, j] * i * (one - g * g)
            for j in range(H):
                dc_next[b, j] *= act[b, H + j]
                dh_next[b, j] = 0.0
