"""Generation as an iterator of text pieces, streamed as the compiled decoder makes them."""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from rnncli.config import SampleConfig

CHUNK = 64  # tokens per compiled call: small enough to stream, large enough to cost nothing


def prepare(model):
    """The decoder's weight tuple: transposed, stacked per layer, C-contiguous float32."""
    p, c = model.params, model.cfg
    L, G, H = c.layers, c.gates * c.hidden, c.hidden
    layers = [p.layer(k) for k in range(L)]
    W_ihT = np.zeros((max(L - 1, 0), H, G), np.float32)
    for k in range(1, L):
        W_ihT[k - 1] = layers[k][0].T
    return (
        np.ascontiguousarray(p["embedding.weight"]),
        np.ascontiguousarray(layers[0][0].T),
        W_ihT,
        np.ascontiguousarray(np.stack([l[1].T for l in layers])),
        np.stack([l[2] for l in layers]),
        np.stack([l[3] for l in layers]),
        np.ascontiguousarray(p["head.weight"].T),
        p["head.bias"].copy(),
    )


def generate(
    checkpoint: str, seed: str, cfg: SampleConfig, threads: int | None = 1, echo: bool = True,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """Text continuing `seed` from a checkpoint's model: the seed first (if echo), then the sample."""
    from rnncli.kernels.decode import decode
    from rnncli.model import load_model, use_threads

    model, tok, _ = load_model(checkpoint)
    use_threads(threads)
    c = model.cfg
    ids, missing = tok.encode(seed)
    if missing and on_warning:
        on_warning(f"left out of the seed, not in the model's vocabulary: {''.join(missing)[:80]!r}")
    if len(ids) == 0:
        start = next((t for t in ("\n", " ") if t in tok.vocab), tok.vocab[0])
        ids = np.array([tok.vocab.index(start)])
    rng = np.random.default_rng(cfg.rng_seed)
    temperature = 0.0 if cfg.greedy else cfg.temperature
    weights = prepare(model)
    h = np.zeros((c.layers, 1, c.hidden), np.float32)
    cs = np.zeros((c.layers, 1, c.hidden if c.cell == "lstm" else 0), np.float32)
    G, A, V = c.gates * c.hidden, 0 if c.cell == "rnn" else 4 * c.hidden, c.vocab_size
    scratch = (np.zeros((1, G), np.float32), np.zeros((1, G), np.float32), np.zeros((1, A), np.float32),
               np.zeros((1, V), np.float32), np.zeros(V, np.float32))
    to_text = tok.decoder()
    if echo and seed:
        yield seed
    prompt = ids.astype(np.int64)
    left = cfg.length
    while left > 0:
        n = min(CHUNK, left)
        out = np.empty(n, np.int64)
        decode(c.cell_code, weights, h, cs, prompt, out, rng.random(n), temperature, cfg.top_k, cfg.top_p, scratch)
        left -= n
        prompt = out[-1:]
        text = to_text(out)
        if text:
            yield text
