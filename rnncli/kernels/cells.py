"""The cells: their table (gate order, what `act` holds) and their pointwise math, float32. Each
cell's forward and backward for one hidden unit (<name>_forward, <name>_backward, chosen by
unit_forward and unit_backward) is what the CUDA recurrence (cuda/recur.py) and the CUDA decoder
(cuda/generate.py) run, compiled as device functions: they know no cell by name. The CPU's step loops
at the end of this file (kernels/cpu's drivers call them) run the same equations laid out in loops
that vectorize; tests/test_cells.py holds them to the per-unit functions.

Everything here is per element; the matrix products live in the drivers. A cell is known by its
code, its index in table.NAMES (which the settings, model/config.py, read too): 0 rnn, 1 gru,
2 lstm. The equations are in reference.py; this file follows them line for line. A new cell is: its
row in table.py, its <name>_forward and <name>_backward, a branch in unit_forward, unit_backward and
the CPU's step loops below, and its equations in reference.py; tests/test_cells.py says what a cell
must define.
"""

import numpy as np

from rnncli.kernels.jit import kernel

# (the table is read by the kernels here, and by cuda/ and the tests through this module)
from rnncli.kernels.table import ACTS, APART, CSTATE, GATES, MAX_GATES, NAMES  # noqa: F401


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


# --- the cell table: kernels/table.py (NAMES, GATES, ACTS, CSTATE, APART, MAX_GATES) -----------------

# --- the cell equations, one element at a time -------------------------------------------------
# Arguments are float32.


@kernel(inline=True)
def gru_n(xn, r, hn):
    """The gru's candidate n = tanh(W_in x + b_in + r * (W_hn h + b_hn))."""
    return tanh32(xn + r * hn)


@kernel(inline=True)
def gru_h(z, n, h_prev):
    return (np.float32(1.0) - z) * n + z * h_prev


@kernel(inline=True)
def lstm_c(i, f, g, c_prev):
    return f * c_prev + i * g


@kernel(inline=True)
def lstm_h(o, c):
    return o * tanh32(c)


@kernel(inline=True)
def rnn_da(dh, h):
    """The rnn's pre-activation gradient from that of h = tanh(a)."""
    return dh * (np.float32(1.0) - h * h)


@kernel(inline=True)
def gru_dan(dh, z, n):
    """Gradient of the gru's n pre-activation."""
    one = np.float32(1.0)
    return dh * (one - z) * (one - n * n)


@kernel(inline=True)
def gru_daz(dh, h_prev, n, z):
    return dh * (h_prev - n) * z * (np.float32(1.0) - z)


@kernel(inline=True)
def gru_dar(dan, hn, r):
    return dan * hn * r * (np.float32(1.0) - r)


@kernel(inline=True)
def lstm_do(dh, tc, o):
    """Gradient of the output gate's pre-activation; tc = tanh(c)."""
    return dh * tc * o * (np.float32(1.0) - o)


@kernel(inline=True)
def lstm_dc(dc, dh, o, tc):
    """The whole gradient of c: what comes from the next step plus what comes through h."""
    return dc + dh * o * (np.float32(1.0) - tc * tc)


@kernel(inline=True)
def lstm_di(dc, g, i):
    return dc * g * i * (np.float32(1.0) - i)


@kernel(inline=True)
def lstm_df(dc, c_prev, f):
    return dc * c_prev * f * (np.float32(1.0) - f)


@kernel(inline=True)
def lstm_dg(dc, i, g):
    return dc * i * (np.float32(1.0) - g * g)


# --- one hidden unit of a step, per cell ---------------------------------------------------------
# forward(x0..x3, g0..g3, b0..b3, h_prev, c_prev) -> (h, c, a0..a3): gate k's pre-activation comes in
# three parts, x (input side, W_ih x + b_ih), g (W_hh h_prev, no bias) and b (b_hh), added in the
# order each cell needs (the gru keeps its n gate's recurrent side apart); a0..a3 are act's slots.
# backward(dh, dc, h_prev, h, c_prev, c, a0..a3) -> (dx0..dx3, dg0..dg3, dh_prev, dc_prev): dh, dc
# the whole gradients of h and c; dx, dg each gate's pre-activation gradient on the input and the
# recurrent side; dh_prev the part of h_prev's gradient that bypasses W_hh, dc_prev c_prev's.


@kernel(inline=True)
def rnn_forward(x0, x1, x2, x3, g0, g1, g2, g3, b0, b1, b2, b3, h_prev, c_prev):
    """h = tanh(W_ih x + b_ih + W_hh h_prev + b_hh); keeps nothing."""
    zero = np.float32(0.0)
    return tanh32(x0 + g0 + b0), zero, zero, zero, zero, zero


@kernel(inline=True)
def rnn_backward(dh, dc, h_prev, h, c_prev, c, a0, a1, a2, a3):
    zero = np.float32(0.0)
    da = rnn_da(dh, h)
    return da, zero, zero, zero, da, zero, zero, zero, zero, zero


@kernel(inline=True)
def gru_forward(x0, x1, x2, x3, g0, g1, g2, g3, b0, b1, b2, b3, h_prev, c_prev):
    """r, z = s(x + (g + b)); hn = g + b of the n gate; n = tanh(x + r * hn); h = (1 - z) n + z h_prev."""
    r = sigmoid32(x0 + (g0 + b0))
    z = sigmoid32(x1 + (g1 + b1))
    hn = g2 + b2
    n = gru_n(x2, r, hn)
    return gru_h(z, n, h_prev), np.float32(0.0), r, z, n, hn


@kernel(inline=True)
def gru_backward(dh, dc, h_prev, h, c_prev, c, a0, a1, a2, a3):
    r, z, n, hn = a0, a1, a2, a3
    zero = np.float32(0.0)
    dan = gru_dan(dh, z, n)
    daz = gru_daz(dh, h_prev, n, z)
    dar = gru_dar(dan, hn, r)
    return dar, daz, dan, zero, dar, daz, dan * r, zero, dh * z, zero


@kernel(inline=True)
def lstm_forward(x0, x1, x2, x3, g0, g1, g2, g3, b0, b1, b2, b3, h_prev, c_prev):
    """i, f, g, o = s, s, tanh, s of g + (x + b); c = f c_prev + i g; h = o tanh(c)."""
    i = sigmoid32(g0 + (x0 + b0))
    f = sigmoid32(g1 + (x1 + b1))
    gg = tanh32(g2 + (x2 + b2))
    o = sigmoid32(g3 + (x3 + b3))
    c = lstm_c(i, f, gg, c_prev)
    return lstm_h(o, c), c, i, f, gg, o


@kernel(inline=True)
def lstm_backward(dh, dc, h_prev, h, c_prev, c, a0, a1, a2, a3):
    i, f, gg, o = a0, a1, a2, a3
    tc = tanh32(c)
    do = lstm_do(dh, tc, o)
    dc = lstm_dc(dc, dh, o, tc)  # now the whole gradient of c
    di = lstm_di(dc, gg, i)
    df = lstm_df(dc, c_prev, f)
    dg = lstm_dg(dc, i, gg)
    return di, df, dg, do, di, df, dg, do, np.float32(0.0), dc * f


@kernel(inline=True)
def unit_forward(cell, x0, x1, x2, x3, g0, g1, g2, g3, b0, b1, b2, b3, h_prev, c_prev):
    """Cell code `cell`'s forward for one unit (the GPU's kernels call it: the cell known at run time)."""
    if cell == 0:
        return rnn_forward(x0, x1, x2, x3, g0, g1, g2, g3, b0, b1, b2, b3, h_prev, c_prev)
    if cell == 1:
        return gru_forward(x0, x1, x2, x3, g0, g1, g2, g3, b0, b1, b2, b3, h_prev, c_prev)
    return lstm_forward(x0, x1, x2, x3, g0, g1, g2, g3, b0, b1, b2, b3, h_prev, c_prev)


@kernel(inline=True)
def unit_backward(cell, dh, dc, h_prev, h, c_prev, c, a0, a1, a2, a3):
    """The backward of cell code `cell` for one unit."""
    if cell == 0:
        return rnn_backward(dh, dc, h_prev, h, c_prev, c, a0, a1, a2, a3)
    if cell == 1:
        return gru_backward(dh, dc, h_prev, h, c_prev, c, a0, a1, a2, a3)
    return lstm_backward(dh, dc, h_prev, h, c_prev, c, a0, a1, a2, a3)


# --- the CPU's step loops ------------------------------------------------------------------------
# These write the table's layout a second time, as loops over one block each, rather than calling
# unit_forward/unit_backward once a unit: a loop that writes act's four blocks and h and c at once
# reads and writes too many arrays for LLVM to prove apart, and runs unvectorized (measured on a Zen 3,
# B = 32..64, H = 128..256: the gru's and lstm's steps 3-6x slower). tests/test_cells.py holds them to
# the per-unit functions.


@kernel
def forward_step(cell, gx, gh, b_hh, h_prev, c_prev, h, c, act):
    """One time step for all rows. gx = W_ih x + b_ih (B, G); gh = W_hh h_prev (B, G) without bias,
    overwritten. Writes h (B, H) and, for the lstm, c; fills act. h may be h_prev and c may be
    c_prev (generation updates in place).

    For speed, every loop counts j from 0 (so LLVM knows indices are >= 0 and needs no wraparound)
    and writes one block of one array without reading another block of that array (so it can
    prove the accesses apart): LLVM then vectorizes each loop."""
    B, H = h.shape
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
                gh[b, 2 * H + j] = gru_n(gx[b, 2 * H + j], act[b, j], gh[b, 2 * H + j])
            for j in range(H):
                act[b, 2 * H + j] = gh[b, 2 * H + j]
            for j in range(H):
                h[b, j] = gru_h(act[b, H + j], gh[b, 2 * H + j], h_prev[b, j])
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
                cn = lstm_c(act[b, j], act[b, H + j], act[b, 2 * H + j], c_prev[b, j])
                c[b, j] = cn
                h[b, j] = lstm_h(act[b, 3 * H + j], cn)


@kernel
def backward_step(cell, dh_out, dh_next, dc_next, h_prev, h, c_prev, c, act, dgx, dgh):
    """Chain rule through one step. dh = dh_out + dh_next is the gradient of h; dc_next that of c.
    Writes the pre-activation gradients: dgx (input side) and dgh (recurrent side; the same array
    for rnn and lstm, different only in the gru's n block). Leaves in dh_next the part of the
    gradient of h_prev that bypasses W_hh (gru: dh * z; others 0) and in dc_next that of c_prev.
    Loops are shaped as in forward_step, one written block each, so that they vectorize."""
    B, H = h.shape
    for b in range(B):
        for j in range(H):
            dh_next[b, j] += dh_out[b, j]  # now the whole gradient of h
        if cell == 0:
            for j in range(H):
                dgx[b, j] = rnn_da(dh_next[b, j], h[b, j])
            for j in range(H):
                dh_next[b, j] = 0.0
        elif cell == 1:
            for j in range(H):  # dan, through n = tanh(.)
                dgx[b, 2 * H + j] = gru_dan(dh_next[b, j], act[b, H + j], act[b, 2 * H + j])
            for j in range(H):  # daz
                dgx[b, H + j] = gru_daz(dh_next[b, j], h_prev[b, j], act[b, 2 * H + j], act[b, H + j])
            for j in range(H):  # dar = dan * hn * r * (1 - r)
                dan = gru_dan(dh_next[b, j], act[b, H + j], act[b, 2 * H + j])
                dgx[b, j] = gru_dar(dan, act[b, 3 * H + j], act[b, j])
            for j in range(2 * H):
                dgh[b, j] = dgx[b, j]
            for j in range(H):
                dgh[b, 2 * H + j] = dgx[b, 2 * H + j] * act[b, j]
            for j in range(H):
                dh_next[b, j] *= act[b, H + j]
        else:
            for j in range(H):  # do, and dc_next becomes the whole gradient of c
                o, tc = act[b, 3 * H + j], tanh32(c[b, j])
                dgx[b, 3 * H + j] = lstm_do(dh_next[b, j], tc, o)
                dc_next[b, j] = lstm_dc(dc_next[b, j], dh_next[b, j], o, tc)
            for j in range(H):  # di
                dgx[b, j] = lstm_di(dc_next[b, j], act[b, 2 * H + j], act[b, j])
            for j in range(H):  # df
                dgx[b, H + j] = lstm_df(dc_next[b, j], c_prev[b, j], act[b, H + j])
            for j in range(H):  # dg
                dgx[b, 2 * H + j] = lstm_dg(dc_next[b, j], act[b, j], act[b, 2 * H + j])
            for j in range(H):
                dc_next[b, j] *= act[b, H + j]
                dh_next[b, j] = 0.0
