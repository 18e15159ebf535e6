"""Running a model over a text to look inside it: the surprise at every token, the likeliest next
tokens and every unit's hidden (and cell) state at every position.

It reads the states out of the same compiled forward pass that `eval` runs (Model's own buffers),
so what it shows is what the model computes, not a second implementation of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rnncli.run.evaluate import eval_streams_batch

ROWS = 256  # positions whose softmax and top-K are taken at once


@dataclass(frozen=True)
class Probe:
    """What the model did at each of the n tokens of a text.

    loss[i]      nats of token i given the tokens before it (loss[0] is NaN: nothing predicted it)
    top_ids[i]   the K likeliest tokens to follow token i, likeliest first; top_p their probabilities
    acts[(l, s)] (n, H) float32: unit states of layer l after reading token i, s "h" (or "c": LSTM cell)
    """

    tokens: list[str]  # what each token shows as, in order; their concatenation is the text read
    ids: np.ndarray  # (n,)
    loss: np.ndarray  # (n,) float32
    top_ids: np.ndarray  # (n, K) int32
    top_p: np.ndarray  # (n, K) float32
    acts: dict = field(default_factory=dict)  # (layer, state) -> (n, H) float32
    vocab: list[str] = field(default_factory=list)  # display text of every token id

    @property
    def n(self) -> int:
        return len(self.ids)

    def mean_loss(self) -> float:
        return float(np.mean(self.loss[1:], dtype=np.float64)) if self.n > 1 else math.nan


@dataclass(frozen=True)
class Layout:
    """The text run as B streams of R inputs, so that the compiled forward works on batches as
    in eval. Stream b records text positions [b*S, b*S + S) and starts `warm` tokens earlier (stream 0
    at the start of the text), so that its first recorded state has read at least `warm` tokens of
    context rather than starting from zeros at an arbitrary cut. B = 1 is the text read straight
    through, exactly as one stream of eval."""

    n: int
    B: int
    S: int
    warm: int

    @classmethod
    def plan(cls, n: int, seq: int, max_batch: int) -> "Layout":
        B = eval_streams_batch(n + 1, seq, max_batch)
        S = -(-n // B)
        B = -(-n // S)  # no empty streams
        return cls(n, B, S, 0 if B == 1 else min(2 * seq, S))

    @property
    def R(self) -> int:
        return self.S + self.warm

    def start(self, b: int) -> int:
        return 0 if b == 0 else b * self.S - self.warm

    def inputs(self, ids: np.ndarray) -> np.ndarray:
        """(B, R) token ids of each stream, padded with id 0 past the end of the text."""
        x = np.zeros((self.B, self.R), np.int64)
        for b in range(self.B):
            part = ids[self.start(b) : self.start(b) + self.R]
            x[b, : len(part)] = part
        return x

    def positions(self) -> np.ndarray:
        """(B, R): the text position each stream step records, or -1 (warm-up, duplicate or padding)."""
        where = np.full((self.B, self.R), -1, np.int64)
        for b in range(self.B):
            first = b * self.S
            count = max(0, min(self.S, self.n - first))
            off = first - self.start(b)
            where[b, off : off + count] = np.arange(first, first + count)
        return where


def token_texts(tokenizer, data: bytes | str, ids: np.ndarray) -> list[str]:
    """What each token of `data` shows as: for char, the character; for word, the text it was
    read from (not <unk>); for byte, the whole character at the byte that starts it, and nothing
    at the bytes that continue it (bytes that are not UTF-8 show as U+FFFD)."""
    if tokenizer.kind == "char":
        return [tokenizer.vocab[i] for i in ids.tolist()]
    if tokenizer.kind == "word":
        from rnncli.data.text import WORD_RE

        return [m.group() for m in WORD_RE.finditer(data)]
    out, raw = [], bytes(data)
    i = 0
    while i < len(raw):
        width = next((w for w in (1, 2, 3, 4) if _utf8_ok(raw[i : i + w])), 1)
        out.append(raw[i : i + width].decode("utf-8", errors="replace"))
        out.extend([""] * (width - 1))
        i += width
    return out


def _utf8_ok(chunk: bytes) -> bool:
    try:
        chunk.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def vocab_texts(tokenizer) -> list[str]:
    """How each token id shows in a list of predictions (bytes past ASCII as \\xNN)."""
    if tokenizer.kind == "byte":
        return [chr(b) if b < 128 else f"\\x{b:02x}" for b in range(256)]
    return list(tokenizer.vocab)


def _log_softmax_at(logits: np.ndarray, k: int, targets: np.ndarray | None):
    """For logits (N, V): log-probabilities of targets (N,) (or None), the top-k ids and their
    probabilities, row by row, in float64 sums."""
    peak = logits.max(axis=1, keepdims=True)
    shifted = logits - peak
    lse = np.log(np.exp(shifted).sum(axis=1, dtype=np.float64))  # (N,)
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k] if k else np.zeros((len(logits), 0), np.int64)
    top_logit = np.take_along_axis(shifted, top, axis=1)
    order = np.argsort(-top_logit, axis=1, kind="stable")
    top, top_logit = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_logit, order, axis=1)
    top_p = np.exp(top_logit - lse[:, None]).astype(np.float32)
    logp = None if targets is None else np.take_along_axis(shifted, targets[:, None], axis=1)[:, 0] - lse
    return logp, top.astype(np.int32), top_p


def probe_ids(model, ids: np.ndarray, seq: int, max_batch: int, top_k: int = 5, states=()) -> dict:
    """Run the model over token ids (n,) and return loss (n,), top_ids/top_p (n, top_k) and
    acts {(layer, state): (n, H)} for each (layer, state) in `states`."""
    K, cfg = model.K, model.cfg
    top_k = min(top_k, cfg.vocab_size)  # (a vocabulary may be smaller than the list asked for)
    ids = np.asarray(ids, np.int64)
    n = len(ids)
    lay = Layout.plan(n, seq, max_batch)
    x, where = lay.inputs(ids), lay.positions()
    nxt = np.append(ids[1:], 0)  # the token after each position (the target), 0 past the end
    loss = np.full(n, np.nan, np.float32)
    top_ids = np.zeros((n, top_k), np.int32)
    top_p = np.zeros((n, top_k), np.float32)
    acts = {key: np.zeros((n, cfg.hidden), np.float32) for key in states}
    h, c = model.zero_state(lay.B)
    for a in range(0, lay.R, seq):
        t = min(seq, lay.R - a)
        window = np.ascontiguousarray(x[:, a : a + t].T)  # (t, B)
        logits = K.to_host(model.logits(window, h, c))  # (t, B, V)
        h, c = model.final_state(t, lay.B)
        pos = where[:, a : a + t].T  # (t, B)
        keep = pos >= 0
        p = pos[keep]
        if not p.size:
            continue
        rows = logits.reshape(-1, logits.shape[-1])
        flat = np.flatnonzero(keep.reshape(-1))
        for a0 in range(0, len(flat), ROWS):  # a few rows at a time: (rows, V) temporaries stay small
            at, pos_ = flat[a0 : a0 + ROWS], p[a0 : a0 + ROWS]
            logp, top, prob = _log_softmax_at(rows[at], top_k, nxt[pos_])
            has_next = pos_ + 1 < n
            loss[pos_[has_next] + 1] = -logp[has_next]
            top_ids[pos_], top_p[pos_] = top, prob
        if states:
            hs, cs = model.states(t, lay.B)  # (L, t, B, H)
            for layer, state in states:
                acts[(layer, state)][p] = K.to_host((hs if state == "h" else cs)[layer])[keep]
    return {"loss": loss, "top_ids": top_ids, "top_p": top_p, "acts": acts}


def probe_text(
    data: bytes | str, loaded, top_k: int = 5, states=(), threads: int | None = None, on_warning=None
) -> Probe:
    """Probe a text (str, or bytes for a byte model) with a loaded model (load.load_model's
    (model, tokenizer, metadata)); `states` lists the (layer, "h"|"c") whose activations to keep."""
    from rnncli.base import memory
    from rnncli.base.errors import RnncliError
    from rnncli.data.text import missing_note
    from rnncli.model.model import workspace_bytes

    model, tokenizer, meta = loaded
    train_cfg = meta["train"]
    model.K.use_threads(threads)
    ids, missing = tokenizer.encode(data)
    if missing and on_warning:
        on_warning(missing_note(tokenizer.kind, missing))
    if len(ids) < 2:
        raise RnncliError("the text has fewer than two tokens the model knows: nothing to look at")
    lay = Layout.plan(len(ids), train_cfg.seq, train_cfg.batch)
    keep = len(ids) * (4 * len(states) * model.cfg.hidden + 8 * top_k + 120)  # (120: a token's str in a list)
    memory.require(
        keep + workspace_bytes(model.K, model.cfg, train_cfg.seq, lay.B, False, threads),
        "looking inside this model over this text",
        "use a shorter text or ask for fewer units",
    )
    tokens = token_texts(tokenizer, data, ids)
    out = probe_ids(model, ids, train_cfg.seq, train_cfg.batch, top_k, tuple(states))
    return Probe(tokens, ids, out["loss"], out["top_ids"], out["top_p"], out["acts"], vocab_texts(tokenizer))
