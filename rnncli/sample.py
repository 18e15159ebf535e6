"""Generation as an iterator of text pieces, streamed as the compiled decoder makes them."""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from rnncli.config import SampleConfig

CHUNK = 64  # tokens per compiled call: small enough to stream, large enough to cost nothing
TABLE_LIMIT = 1 << 22  # floats in layer 0's per-token projection table, beyond which it is not built


class Decoder:
    """A model's weights laid out for the batch-1 decoder (transposed, stacked per layer), its
    recurrent state and a random stream; `tokens` continues from wherever the last call stopped."""

    def __init__(self, model, cfg: SampleConfig):
        p, c = model.params, model.cfg
        L, G, H = c.layers, c.gates * c.hidden, c.hidden
        layers = [p.layer(k) for k in range(L)]
        W_ihT = np.zeros((max(L - 1, 0), H, G), np.float32)
        for k in range(1, L):
            W_ihT[k - 1] = layers[k][0].T
        table0 = np.zeros((0, G), np.float32)
        if c.vocab_size * G <= TABLE_LIMIT:
            table0 = model.layer0_table()
        self.weights = (
            np.ascontiguousarray(table0, dtype=np.float32),
            np.ascontiguousarray(p["embedding.weight"]),
            np.ascontiguousarray(layers[0][0].T),
            W_ihT,
            np.ascontiguousarray(np.stack([w[1].T for w in layers])),
            np.stack([w[2] for w in layers]),
            np.stack([w[3] for w in layers]),
            np.ascontiguousarray(p["head.weight"].T),
            p["head.bias"].copy(),
        )
        self.cell = c.cell_code
        self.h = np.zeros((L, 1, H), np.float32)
        self.c = np.zeros((L, 1, H if c.cell == "lstm" else 0), np.float32)
        A, V = 0 if c.cell == "rnn" else 4 * H, c.vocab_size
        self.vocab_size = V
        self.scratch = tuple(np.zeros(shape, np.float32) for shape in [(1, G), (1, G), (1, A), (1, V), (V,)])
        self.cfg = cfg
        self.temperature = 0.0 if cfg.greedy else cfg.temperature
        self.rng = np.random.default_rng(cfg.rng_seed)

    def tokens(self, prompt: np.ndarray, n: int) -> Iterator[np.ndarray]:
        """Feed `prompt` ids, then yield n sampled ids in chunks."""
        from rnncli.kernels.decode import decode
        from rnncli.model import check_ids

        prompt = prompt.astype(np.int64)
        check_ids(prompt, self.vocab_size)
        while n > 0:
            out = np.empty(min(CHUNK, n), np.int64)
            decode(self.cell, self.weights, self.h, self.c, prompt, out, self.rng.random(len(out)),
                   self.temperature, self.cfg.top_k, self.cfg.top_p, self.scratch)
            n -= len(out)
            prompt = out[-1:]
            yield out


def generate(
    loaded, seed: str, cfg: SampleConfig, echo: bool = True,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """Text continuing `seed` from a model (model.load_model's (model, tokenizer, metadata)): the
    seed first (if echo), then the sample. The decoder's own loop is serial (batch 1); OpenBLAS
    may thread its larger products."""
    model, tok, _ = loaded
    ids, missing = tok.encode(seed)
    if missing and on_warning:
        on_warning(f"left out of the seed, not in the model's vocabulary: {''.join(missing)[:80]!r}")
    if len(ids) == 0:
        start = next((t for t in ("\n", " ") if t in tok.vocab), tok.vocab[0])
        ids = np.array([tok.vocab.index(start)])
    to_text = tok.decoder()
    if echo and seed:
        yield seed
    for out in Decoder(model, cfg).tokens(ids, cfg.length):
        text = to_text(out)
        if text:
            yield text
