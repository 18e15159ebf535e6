"""Compiled generation for B rows at once: feed a prompt, then sample and feed back tokens without
returning to Python. At B = 1 the products are vector-matrix; with more rows they are matrix
products over the rows, which is where batched sampling gets its speed. Either one thread runs
all rows and BLAS threads the products itself (decode_rows), or each kernel thread runs the whole
loop on its own share of the rows (decode), every product by the path (gemm.PATHS) the backend
chose for its shape, as the training drivers do; kernels/cpu/backend.py's prepare_decoding decides.

The cell math is the same forward_step the training driver uses, run on (B, H) rows in place.
Weights arrive stacked per layer, in both layouts the products read (`layout` builds them; the
records are kernels/decoding.py's). With the large matrices narrow (bf16, int8) the row layout is
narrow, for narrow.py's one-row products, which widen them in registers; the transposes hold the
same values in float32 (unscaled), for several rows, which go at float32's speed.
"""

import numpy as np
from numba import prange

from rnncli.kernels import formats
from rnncli.kernels.cells import forward_step
from rnncli.kernels.cpu.gemm import BLAS, padded, product
from rnncli.kernels.cpu.narrow import product_any
from rnncli.kernels.cpu.steps import _share
from rnncli.kernels.decoding import Rows, Weights  # noqa: F401 (Rows: for this decoder's callers)
from rnncli.kernels.jit import kernel
from rnncli.kernels.sampling import choose


def layout(layers, emb, table0, head_weight, head_bias, fmt: str = "f32") -> Weights:
    """Host Weights from each layer's (W_ih, W_hh, b_ih, b_hh), the embedding, layer 0's token table
    ((0, G) for none) and the head (the CPU backend's decoder_weights). fmt (kernels/formats.py): the
    matrices formats.narrow_names lists are kept in it, rows padded, with no transposes."""
    c = np.ascontiguousarray
    L, (G, H) = len(layers), layers[0][1].shape
    W_ih = np.stack([w[0] for w in layers[1:]]) if L > 1 else np.zeros((0, G, H), np.float32)
    W_hh = np.stack([w[1] for w in layers])
    narrow = [formats.compress(W, fmt) for W in (W_ih, W_hh, head_weight)]
    # (f32, bf16: no scales, as arrays of the same number of dimensions with no columns)
    scales = [s if s is not None else np.zeros(Q.shape[:-2] + (0,), np.float32) for Q, s in narrow]
    # the transposes BLAS and the row-building kernel read: for narrow weights, of the narrow values
    # widened but not scaled (product_any scales the outputs), read when several rows are decoded
    # together, where the products are bound by arithmetic rather than bytes
    W_ihT, W_hhT = (c(formats.widen(Q).transpose(0, 2, 1)) for Q, _ in narrow[:2])
    W_outT = c(formats.widen(narrow[2][0]).T)
    return Weights(
        c(table0, dtype=np.float32),
        c(emb),
        c(layers[0][0].T),
        W_ihT,
        W_hhT,
        np.stack([w[2] for w in layers]),
        np.stack([w[3] for w in layers]),
        W_outT,
        head_bias.copy(),
        padded(layers[0][0]),
        *(padded(Q) for Q, _ in narrow),
        *scales,
    )


def blas_paths(layers: int) -> np.ndarray:
    """Every product by BLAS: the `paths` for one row (a vector-matrix product is BLAS's to thread)."""
    return np.full(2 * layers + 1, BLAS, np.int64)


@kernel(inline=True)
def step(cell, w, paths, h, c, r, b0, b1):
    """Advance every layer of rows b0..b1 by their tokens r.toks[b] and leave the next token's
    logits in r.logits[b0:b1]. h, c (L, B, H) are updated in place; the tokens join r.recent.
    paths (2L + 1,): each layer's input and recurrent product's path, then the head's (gemm.PATHS,
    or for narrow weights one row's narrow.ONE or SPREAD)."""
    L = h.shape[0]
    G = r.gx.shape[1]
    R = r.recent.shape[1]
    for b in range(b0, b1):
        if R > 0:  # the token joins the ring, pushing out the one R tokens back
            at = r.seen[b] % R
            if r.seen[b] >= R:
                r.counts[b, r.recent[b, at]] -= 1
            r.recent[b, at] = r.toks[b]
            r.counts[b, r.toks[b]] += 1
        r.seen[b] += 1
    gx, gh = r.gx[b0:b1], r.gh[b0:b1]
    for layer in range(L):
        if layer == 0 and w.table0.shape[0] > 0:
            for b in range(b0, b1):
                for j in range(G):
                    r.gx[b, j] = w.table0[r.toks[b], j]
        else:
            if layer == 0:
                for b in range(b0, b1):
                    for e in range(r.x.shape[1]):
                        r.x[b, e] = w.emb[r.toks[b], e]
                product(r.x[b0:b1], w.W_ih0, w.W_ih0T, gx, paths[0])
            else:
                W, WT, scale = w.W_ih[layer - 1], w.W_ihT[layer - 1], w.s_ih[layer - 1]
                product_any(h[layer - 1, b0:b1], W, WT, scale, gx, paths[2 * layer])
            for b in range(b0, b1):
                for j in range(G):
                    r.gx[b, j] += w.b_ih[layer, j]
        product_any(h[layer, b0:b1], w.W_hh[layer], w.W_hhT[layer], w.s_hh[layer], gh, paths[2 * layer + 1])
        hl, cl = h[layer, b0:b1], c[layer, b0:b1]
        if cell == 0:  # the rnn's new h reads nothing of the old: in place costs nothing
            forward_step(cell, gx, gh, w.b_hh[layer], hl, cl, hl, cl, r.act[b0:b1])
            continue
        # gru, lstm: into other arrays, then copied; written in place, LLVM's run-time check that
        # the arrays are apart fails and the cell math runs unvectorized (the lstm's 2x slower)
        hn, cn = r.hn[b0:b1], r.cn[b0:b1]
        forward_step(cell, gx, gh, w.b_hh[layer], hl, cl, hn, cn, r.act[b0:b1])
        for b in range(b1 - b0):  # (loops: numba's slice assignment costs more at these sizes)
            for j in range(hn.shape[1]):
                hl[b, j] = hn[b, j]
            for j in range(cn.shape[1]):
                cl[b, j] = cn[b, j]
    product_any(h[L - 1, b0:b1], w.W_out, w.W_outT, w.s_out, r.logits[b0:b1], paths[2 * L])
    for b in range(b0, b1):
        for v in range(r.logits.shape[1]):
            r.logits[b, v] += w.b_out[v]


@kernel
def feed(cell, w, paths, h, c, r, prompt):
    """Feed the prompt ids (P,) to every row, one token a step (rows start from the state they have)."""
    B = r.toks.shape[0]
    for i in range(prompt.shape[0]):
        for b in range(B):
            r.toks[b] = prompt[i]
        step(cell, w, paths, h, c, r, 0, B)


@kernel
def decode_rows(cell, w, paths, h, c, r, s, uniforms, out, b0, b1):
    """decode for rows b0..b1 in the calling thread (streaming calls it for its one row, so that
    BLAS may thread the vector-matrix products as it likes)."""
    for i in range(out.shape[0]):
        if b0 == 0 and b1 == r.toks.shape[0]:  # all rows: no slices to make (each costs reference counting)
            choose(r.logits, r.counts, s, uniforms[i], r.toks, r.probs)
        else:
            choose(r.logits[b0:b1], r.counts[b0:b1], s, uniforms[i, b0:b1], r.toks[b0:b1], r.probs[b0:b1])
        for b in range(b0, b1):
            out[i, b] = r.toks[b]
        step(cell, w, paths, h, c, r, b0, b1)


@kernel(parallel=True)
def decode(cell, w, paths, h, c, r, s, uniforms, out, parts):
    """Sample n tokens for every row from the logits the last step left, feeding each back:
    out (n, B), uniforms (n, B) in [0, 1), s the Sampling settings (sampling.py). Rows are
    independent, so each of `parts` threads runs the whole loop for its own slice of them."""
    B = out.shape[1]
    parts = min(parts, B)
    for k in prange(parts):
        b0, b1 = _share(B, parts, k)
        decode_rows(cell, w, paths, h, c, r, s, uniforms, out, b0, b1)
