"""The slow float64 NumPy reference of the whole model: the oracle for every kernel, never used by the CLI.

Written for reading, one time step at a time. Shapes: T steps, B streams, H hidden, V vocabulary.
Gate order and equations are PyTorch's (x is the layer input, h the previous hidden state):

  rnn:  h' = tanh(W_ih x + b_ih + W_hh h + b_hh)
  gru:  r = s(W_ir x + b_ir + W_hr h + b_hr);  z = s(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn));  h' = (1 - z) * n + z * h
  lstm: i, f, g, o = s(.), s(.), tanh(.), s(.) of W_ih x + b_ih + W_hh h + b_hh (four blocks)
        c' = f * c + i * g;  h' = o * tanh(c')

with s the logistic sigmoid. Loss: mean over T*B of -log softmax(W_out h_top + b_out)[target].
"""

from __future__ import annotations

import numpy as np


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def cell_forward(cell, x, h, c, W_ih, W_hh, b_ih, b_hh):
    """One step for a (B, I) input; returns h', c' and what backward needs."""
    H = h.shape[1]
    ax = x @ W_ih.T + b_ih
    ah = h @ W_hh.T + b_hh
    if cell == "rnn":
        h_new = np.tanh(ax + ah)
        return h_new, c, (x, h, h_new)
    if cell == "gru":
        r = sigmoid(ax[:, :H] + ah[:, :H])
        z = sigmoid(ax[:, H : 2 * H] + ah[:, H : 2 * H])
        hn = ah[:, 2 * H :]
        n = np.tanh(ax[:, 2 * H :] + r * hn)
        h_new = (1 - z) * n + z * h
        return h_new, c, (x, h, r, z, n, hn)
    a = ax + ah
    i, f = sigmoid(a[:, :H]), sigmoid(a[:, H : 2 * H])
    g, o = np.tanh(a[:, 2 * H : 3 * H]), sigmoid(a[:, 3 * H :])
    c_new = f * c + i * g
    h_new = o * np.tanh(c_new)
    return h_new, c_new, (x, h, c, i, f, g, o, c_new)


def cell_backward(cell, dh, dc, saved, W_ih, W_hh, grads, k):
    """Chain rule through one step: dh, dc are the gradients of h', c'. Adds the weight gradients of
    layer k into `grads` and returns (dx, dh_prev, dc_prev)."""
    if cell == "rnn":
        x, h, h_new = saved
        da_x = da_h = dh * (1 - h_new**2)
        dc_prev = dc
    elif cell == "gru":
        x, h, r, z, n, hn = saved
        dn = dh * (1 - z)
        dz = dh * (h - n)
        dan = dn * (1 - n**2)
        dr = dan * hn
        dar, daz = dr * r * (1 - r), dz * z * (1 - z)
        da_x = np.concatenate([dar, daz, dan], axis=1)
        da_h = np.concatenate([dar, daz, dan * r], axis=1)
        dc_prev = dc
    else:
        x, h, c, i, f, g, o, c_new = saved
        tc = np.tanh(c_new)
        dc = dc + dh * o * (1 - tc**2)
        da_x = da_h = np.concatenate(
            [dc * g * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - g**2), dh * tc * o * (1 - o)], axis=1
        )
        dc_prev = dc * f
    grads[f"rnn.weight_ih_l{k}"] += da_x.T @ x
    grads[f"rnn.weight_hh_l{k}"] += da_h.T @ h
    grads[f"rnn.bias_ih_l{k}"] += da_x.sum(0)
    grads[f"rnn.bias_hh_l{k}"] += da_h.sum(0)
    dh_prev = da_h @ W_hh + (dh * saved[3] if cell == "gru" else 0.0)
    return da_x @ W_ih, dh_prev, dc_prev


def forward(P, cell, inputs, h0, c0, masks=None):
    """Top-layer outputs (T, B, H) for token ids (T, B), the logits (T, B, V), every layer's states
    after each step hs, cs (L, T, B, H), and what backward needs of each layer and step."""
    T, B = inputs.shape
    L = h0.shape[0]
    layer_in = P["embedding.weight"][inputs]  # (T, B, E)
    saved = [[None] * T for _ in range(L)]
    hs, cs = np.empty((L, T) + h0.shape[1:]), np.empty((L, T) + c0.shape[1:])
    for k in range(L):
        W = [P[f"rnn.{n}_l{k}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h, c = h0[k], c0[k]
        for t in range(T):
            h, c, saved[k][t] = cell_forward(cell, layer_in[t], h, c, *W)
            hs[k, t], cs[k, t] = h, c
        layer_in = hs[k] * masks[k] if (masks is not None and k < L - 1) else hs[k]
    logits = layer_in @ P["head.weight"].T + P["head.bias"]  # (T, B, V)
    return layer_in, logits, hs, cs, saved


def forward_backward(P, cell, inputs, targets, h0, c0, masks=None):
    """Loss, logits, final states and the gradient of the loss for every parameter.

    P: dict name -> float64 array (PyTorch names); inputs, targets: (T, B) ints; h0, c0: (L, B, H);
    masks: None or a list of L-1 arrays (T, B, H) multiplied into each layer's output but the last
    (inverted dropout). Returns a dict with loss, logits (T, B, V), h_n, c_n and grads.
    """
    T, B = inputs.shape
    L = h0.shape[0]
    grads = {name: np.zeros_like(v) for name, v in P.items()}
    layer_in, logits, hs, cs, saved = forward(P, cell, inputs, h0, c0, masks)
    h_n, c_n = hs[:, -1], cs[:, -1]
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    N = T * B
    tt, bb = np.meshgrid(np.arange(T), np.arange(B), indexing="ij")
    loss = -logp[tt, bb, targets].sum() / N

    dlogits = np.exp(logp)
    dlogits[tt, bb, targets] -= 1.0
    dlogits /= N
    grads["head.weight"] += dlogits.reshape(N, -1).T @ layer_in.reshape(N, -1)
    grads["head.bias"] += dlogits.reshape(N, -1).sum(0)
    d_out = dlogits @ P["head.weight"]  # (T, B, H)
    for k in reversed(range(L)):
        if masks is not None and k < L - 1:
            d_out = d_out * masks[k]
        W_ih, W_hh = P[f"rnn.weight_ih_l{k}"], P[f"rnn.weight_hh_l{k}"]
        dh, dc = np.zeros_like(h0[k]), np.zeros_like(c0[k])
        d_in = np.empty(d_out.shape[:2] + (W_ih.shape[1],))
        for t in reversed(range(T)):
            d_in[t], dh, dc = cell_backward(cell, d_out[t] + dh, dc, saved[k][t], W_ih, W_hh, grads, k)
        d_out = d_in
    np.add.at(grads["embedding.weight"], inputs, d_out)
    return {"loss": loss, "logits": logits, "h_n": h_n, "c_n": c_n, "grads": grads}


def adam_step(P, G, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, clip=0.0):
    """torch.optim.Adam (no weight decay) after global-norm clipping as torch.nn.utils.clip_grad_norm_
    does it: g *= min(1, clip / (norm + 1e-6)). `step` counts from 1. Updates P, m, v in place."""
    norm = np.sqrt(sum((g**2).sum() for g in G.values()))
    scale = min(1.0, clip / (norm + 1e-6)) if clip > 0 else 1.0
    for name in P:
        g = G[name] * scale
        m[name] = beta1 * m[name] + (1 - beta1) * g
        v[name] = beta2 * v[name] + (1 - beta2) * g * g
        m_hat = m[name] / (1 - beta1**step)
        denom = np.sqrt(v[name] / (1 - beta2**step)) + eps
        P[name] -= lr * m_hat / denom
    return norm


def sample_probs(logits, recent, penalty=1.0, top_k=0, top_p=1.0, min_p=0.0, temperature=1.0):
    """The distribution the sampler chain draws one token from, for one row of logits (V,), in
    llama.cpp's order:
      penalty:     each distinct token in `recent` (the last tokens): logit / penalty if > 0, else * penalty
      top_k:       keep the k largest logits (0: all)
      top_p:       keep the fewest likeliest tokens whose softmax mass (temperature 1) reaches top_p
      min_p:       keep tokens with p >= min_p * max p
      temperature: softmax(logits / temperature) over what is kept; 0 puts all mass on the largest
    """
    z = np.array(logits, np.float64)
    for t in set(int(t) for t in recent):
        z[t] = z[t] / penalty if z[t] > 0 else z[t] * penalty
    keep = np.ones(len(z), bool)
    order = np.argsort(-z, kind="stable")
    if 0 < top_k < len(z):
        keep[order[top_k:]] = False
    if top_p < 1.0:
        p = np.where(keep, np.exp(z - z.max()), 0.0)
        ranked = p[order] / p.sum()
        n = int(np.searchsorted(np.cumsum(ranked), top_p)) + 1  # first prefix reaching top_p
        keep[order[n:]] = False
    if min_p > 0.0:
        keep &= z - z[keep].max() >= np.log(min_p)
    out = np.zeros(len(z))
    if temperature <= 0.0:
        out[np.argmax(np.where(keep, z, -np.inf))] = 1.0
        return out
    w = np.where(keep, np.exp((z - z[keep].max()) / temperature), 0.0)
    return w / w.sum()
