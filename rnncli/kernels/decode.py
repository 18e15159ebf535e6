"""Compiled generation: feed a prompt and sample tokens at batch 1 without returning to Python.

The cell math is the same forward_step the training driver uses, run on (1, H) rows in place.
Weights arrive pre-transposed and stacked per layer (see sample.py).
"""
import numpy as np

from rnncli.kernels.cells import forward_step
from rnncli.kernels.jit import kernel


@kernel
def sample_token(logits, temperature, top_k, top_p, u, probs):
    """Draw a token from logits (V,) with uniform u in [0, 1): argmax when temperature <= 0, else
    softmax(logits / temperature) cut to the top_k most likely (0: all), then to the smallest set
    whose mass reaches top_p of what is left."""
    V = logits.shape[0]
    best = 0
    for v in range(1, V):
        if logits[v] > logits[best]:
            best = v
    if temperature <= 0.0:
        return best
    inv_t = np.float32(1.0 / temperature)
    for v in range(V):
        probs[v] = np.exp((logits[v] - logits[best]) * inv_t)
    if (0 < top_k < V) or top_p < 1.0:
        order = np.argsort(probs)[::-1]
        keep = top_k if 0 < top_k < V else V
        mass = 0.0
        for i in range(keep):
            mass += probs[order[i]]
        cum = 0.0
        for i in range(keep):
            cum += probs[order[i]]
            if cum >= top_p * mass:
                keep = i + 1
                break
        for i in range(keep, V):
            probs[order[i]] = 0.0
    total = 0.0
    for v in range(V):
        total += probs[v]
    target = u * total
    cum = 0.0
    for v in range(V):
        cum += probs[v]
        if cum > target and probs[v] > 0.0:
            return v
    return best


@kernel
def step(cell, tok, table0, emb, W_ih0T, W_ihT, W_hhT, b_ih, b_hh, W_outT, b_out, h, c, gx, gh, act, logits):
    """Advance every layer by one token and leave the next token's logits (1, V) in `logits`.
    h, c (L, 1, H) are updated in place. table0 (V, G), when not empty, holds E W_ih0^T + b_ih0,
    so that layer 0's input projection is a row copy."""
    L = h.shape[0]
    G = gx.shape[1]
    for layer in range(L):
        if layer == 0 and table0.shape[0] > 0:
            for j in range(G):
                gx[0, j] = table0[tok, j]
        else:
            if layer == 0:
                np.dot(emb[tok : tok + 1], W_ih0T, gx)
            else:
                np.dot(h[layer - 1], W_ihT[layer - 1], gx)
            for j in range(G):
                gx[0, j] += b_ih[layer, j]
        np.dot(h[layer], W_hhT[layer], gh)
        forward_step(cell, gx, gh, b_hh[layer], h[layer], c[layer], h[layer], c[layer], act)
    np.dot(h[L - 1], W_outT, logits)
    for v in range(logits.shape[1]):
        logits[0, v] += b_out[v]


@kernel
def decode(cell, weights, h, c, prompt, out, uniforms, temperature, top_k, top_p, scratch):
    """Feed the prompt ids, then sample len(out) ids into `out`, each fed back but the last (the
    caller passes it as the next prompt). weights, scratch: tuples built by sample.py."""
    table0, emb, W_ih0T, W_ihT, W_hhT, b_ih, b_hh, W_outT, b_out = weights
    gx, gh, act, logits, probs = scratch
    for i in range(prompt.shape[0]):
        step(cell, prompt[i], table0, emb, W_ih0T, W_ihT, W_hhT, b_ih, b_hh, W_outT, b_out, h, c, gx, gh, act, logits)
    for i in range(out.shape[0]):
        tok = sample_token(logits[0], temperature, top_k, top_p, uniforms[i], probs)
        out[i] = tok
        if i + 1 < out.shape[0]:
            step(cell, tok, table0, emb, W_ih0T, W_ihT, W_hhT, b_ih, b_hh, W_outT, b_out, h, c, gx, gh, act, logits)
