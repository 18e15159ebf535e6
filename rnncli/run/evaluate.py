"""Scoring text with a model: nats per token, bits per character, perplexity."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rnncli.base.errors import RnncliError
from rnncli.data.text import Streams, count_chars


def score_streams(model, streams: Streams) -> tuple[float, int]:
    """Summed nats and the number of tokens scored over every window, state carried between them."""
    h, c = model.zero_state(streams.B)
    total, count = 0.0, 0
    for ids, targets in streams.all_windows():
        total += model.loss(ids, targets, h, c)
        h, c = model.final_state(*ids.shape)
        count += ids.size
    return total, count


@dataclass(frozen=True)
class Score:
    nats_per_token: float
    bits_per_char: float
    perplexity: float
    tokens: int
    chars: int

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def of(cls, nats: float, tokens: int, chars: int) -> "Score":
        """The score of `nats` summed over `tokens` tokens that stand for `chars` characters."""
        per = nats / tokens
        return cls(per, nats / math.log(2) / max(1, chars), math.exp(min(per, 700.0)), tokens, chars)

    @classmethod
    def total(cls, scores: list["Score"]) -> "Score":
        """Several scores as one: nats summed over all their tokens."""
        return cls.of(
            sum(s.nats_per_token * s.tokens for s in scores),
            sum(s.tokens for s in scores),
            sum(s.chars for s in scores),
        )


def eval_streams_batch(n_tokens: int, seq: int, max_batch: int) -> int:
    """Streams for scoring n tokens: as many as training used, but each at least 16 windows long,
    so that little of the text is read without context."""
    return max(1, min(max_batch, (n_tokens - 1) // (16 * seq)))


def score_text(sources: list[str], loaded, threads: int | None = None, on_warning=None) -> Score:
    """Score files (or `-` for stdin) with a model (load.load_model's (model, tokenizer,
    metadata), the model on the device it will run on), state carried across the text."""
    from rnncli.data.text import read_bytes, text_for

    text = text_for(
        loaded[1].kind, read_bytes(sources), "the text", "; this model reads text, not arbitrary bytes"
    )
    return score_data(text, loaded, threads, on_warning)


def score_data(text: str | bytes, loaded, threads: int | None = None, on_warning=None) -> Score:
    """Score a text (str, or bytes for a byte model) held in memory, as score_text scores a file's."""
    from rnncli.base import memory
    from rnncli.data.text import missing_note
    from rnncli.model.model import workspace_bytes

    model, tokenizer, meta = loaded
    train_cfg = meta["train"]
    model.K.use_threads(threads)
    ids, missing = tokenizer.encode(text)
    if missing and on_warning:
        on_warning(missing_note(tokenizer.kind, missing))
    if len(ids) < 2:
        raise RnncliError("the text has fewer than two tokens the model knows: nothing to score")
    seq = train_cfg.seq
    B = eval_streams_batch(len(ids), seq, train_cfg.batch)
    streams = Streams(ids, B, seq)
    memory.require(
        workspace_bytes(model.K, model.cfg, min(seq, streams.length), B, False, threads),
        "scoring with this model",
        "score a shorter text",
    )
    total, count = score_streams(model, streams)
    return Score.of(total, count, max(1, round(count_chars(text) * count / len(ids))))


def score_files(sources: list[str], loaded, threads: int | None = None, on_warning=None) -> list[Score]:
    """Each file (or `-`) scored on its own, from a zero state."""
    return [score_text([src], loaded, threads, on_warning) for src in sources]


def score_held_out(sources: list[str], loaded, threads: int | None = None) -> Score:
    """The model's own validation split of its corpus (`sources`, checked against the fingerprint
    the checkpoint keeps), scored in the layout training validated it in: with the best weights,
    the checkpoint's best validation loss."""
    from rnncli.data.corpus import load_corpus
    from rnncli.data.text import count_token_chars, split_val, val_streams

    model, tokenizer, meta = loaded
    cfg = meta["train"]
    model.K.use_threads(threads)
    corpus = load_corpus(sources, tokenizer.kind, cfg.max_vocab, tokenizer)
    kept = meta.get("corpus") or {}
    if kept.get("sha256") not in (None, corpus.fingerprint["sha256"]):
        raise RnncliError(
            f"{' '.join(sources)} is not the text this model was trained on ({kept.get('bytes', '?')} "
            f"bytes, sha256 {str(kept['sha256'])[:12]}...): --held-out needs its corpus"
        )
    val_ids = split_val(corpus.ids, cfg.val_frac)[1]
    if len(val_ids) <= cfg.seq:
        raise RnncliError(
            f"the model was trained with --val-frac {cfg.val_frac:g}: no validation split to score"
        )
    streams = val_streams(val_ids, cfg.batch, cfg.seq)
    total, count = score_streams(model, streams)
    return Score.of(total, count, count_token_chars(tokenizer, streams.y.ravel()))
