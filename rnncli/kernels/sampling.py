"""Samplers on (B, V) rows of logits, composed in llama.cpp's order: repetition penalty, top-k,
top-p, min-p, temperature, then a draw. Each one cuts tokens by setting their logits to -inf, in
place, so the next sees only what is left. reference.sample_probs is the float64 oracle of the same
rules; this file is what the decoder runs.
"""

from collections import namedtuple

import numpy as np

from rnncli.kernels.cells import expneg32
from rnncli.kernels.jit import kernel

# The sampler chain's settings, as one argument: penalty (1: off), top_k (0: all), top_p (1: off),
# min_p (0: off), temperature (0: greedy). A namedtuple is a plain tuple to Numba.
Sampling = namedtuple("Sampling", "penalty top_k top_p min_p temperature")


@kernel
def penalize(logits, counts, penalty):
    """llama.cpp's repetition penalty: each token among row b's last tokens (counts[b, v] > 0: how
    often v is among them) has a positive logit divided by `penalty`, a negative one multiplied
    by it. One pass along the row, which vectorizes."""
    p = np.float32(penalty)
    for b in range(logits.shape[0]):
        for v in range(logits.shape[1]):
            x = logits[b, v]
            y = x / p if x > 0 else x * p
            logits[b, v] = y if counts[b, v] > 0 else x


@kernel
def cut_top_k(logits, k):
    """Keep each row's k largest logits (k <= 0 or k >= V: all)."""
    B, V = logits.shape
    if k <= 0 or k >= V:
        return
    for b in range(B):
        order = np.argsort(logits[b])
        for i in range(V - k):
            logits[b, order[i]] = -np.inf


@kernel
def cut_top_p(logits, p):
    """Keep the smallest set of each row's likeliest tokens whose probability (softmax at
    temperature 1 over what is still kept) reaches p; at least one (p >= 1: all)."""
    B, V = logits.shape
    if p >= 1.0:
        return
    for b in range(B):
        order = np.argsort(logits[b])[::-1]
        top = logits[b, order[0]]
        total = 0.0
        for v in range(V):
            total += np.exp(np.float64(logits[b, v]) - top)
        cum = 0.0
        for i in range(V):
            cum += np.exp(np.float64(logits[b, order[i]]) - top)
            if cum >= p * total:
                for j in range(i + 1, V):
                    logits[b, order[j]] = -np.inf
                break


@kernel
def cut_min_p(logits, p):
    """Keep the tokens whose probability is at least p times the row's likeliest (p <= 0: all)."""
    if p <= 0.0:
        return
    floor = np.log(p)
    for b in range(logits.shape[0]):
        top = logits[b, 0]
        for v in range(1, logits.shape[1]):
            top = max(top, logits[b, v])
        for v in range(logits.shape[1]):
            if np.float64(logits[b, v]) - top < floor:
                logits[b, v] = -np.inf


@kernel
def draw(logits, temperature, u, out, probs):
    """out[b]: a token from softmax(logits[b] / temperature) with u[b] uniform in [0, 1); the
    largest logit when temperature <= 0. probs (B, V) is left holding the unnormalised weights
    (cells.expneg32's, within ~3e-7 of exp's)."""
    B, V = logits.shape
    for b in range(B):
        best = 0
        for v in range(1, V):
            if logits[b, v] > logits[b, best]:
                best = v
        out[b] = best
        if temperature <= 0.0:
            continue
        inv_t, top = np.float32(1.0 / temperature), logits[b, best]
        for v in range(V):  # one vectorized pass, then the sum in float64
            probs[b, v] = expneg32((logits[b, v] - top) * inv_t)
        total = 0.0
        for v in range(V):
            total += probs[b, v]
        target = u[b] * total
        cum = 0.0
        for v in range(V):
            cum += probs[b, v]
            if cum > target and probs[b, v] > 0.0:
                out[b] = v
                break


@kernel(inline=True)
def choose(logits, counts, s, u, out, probs):
    """The whole chain on (B, V) logits (modified in place): out[b] is row b's token; counts as
    penalize takes them. A sampler that is off is not called at all."""
    if s.penalty != 1.0 and counts.shape[1] == logits.shape[1]:  # (no counts kept: no penalty)
        penalize(logits, counts, s.penalty)
    if 0 < s.top_k < logits.shape[1]:
        cut_top_k(logits, s.top_k)
    if s.top_p < 1.0:
        cut_top_p(logits, s.top_p)
    if s.min_p > 0.0:
        cut_min_p(logits, s.min_p)
    draw(logits, s.temperature, u, out, probs)
