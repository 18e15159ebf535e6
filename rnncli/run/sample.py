"""Generation: a Decoder that runs B rows through the compiled kernels at once, and `generate`,
which turns prompts into answers (pieces of text as they are made, then a record per answer),
with stop strings, a time limit and speed figures. It never prints."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from rnncli.model.config import SampleConfig

CHUNK = 128  # tokens per compiled call: small enough to stream, large enough to cost nothing
BATCH = 64  # answers decoded together (their products are matrix products over the rows)
TABLE_LIMIT = 1 << 22  # floats in layer 0's per-token projection table, beyond which it is not built


def row_rng(seed: int | None, stream: int, root: np.random.SeedSequence | None = None) -> np.random.Generator:
    """Random stream number `stream` of a seed: stream 0 is default_rng(seed), the others its
    children, so answer i draws the same numbers however many answers are decoded beside it."""
    root = root or np.random.SeedSequence(seed)
    return np.random.default_rng(
        root if stream == 0 else np.random.SeedSequence(root.entropy, spawn_key=(stream,))
    )


class Decoder:
    """A model's weights laid out for the decoder (stacked per layer, in both layouts), the recurrent
    state of one row per random stream, and the sampler settings; `tokens` continues from wherever
    the last call stopped."""

    def __init__(
        self,
        model,
        cfg: SampleConfig,
        streams=(0,),
        root: np.random.SeedSequence | None = None,
        threads: int | None = None,
    ):
        from rnncli.kernels.sampling import Sampling

        K, p, c = model.K, model.params, model.cfg
        small = c.vocab_size * c.gate_width <= TABLE_LIMIT
        table0 = model.layer0_table() if small else K.zeros((0, c.gate_width))
        # laid out by the backend, from the arrays it holds (on the GPU: on the device), the large
        # matrices in the model's format (kernels/formats.py)
        self.fmt = model.weights
        self.weights = K.decoder_weights(
            [p.layer(k) for k in range(c.layers)],
            p["embedding.weight"],
            table0,
            p["head.weight"],
            p["head.bias"],
            self.fmt,
        )
        self.K, self.cell, self.mcfg, self.cfg, self.threads = K, c.cell_code, c, cfg, threads
        self.recent = cfg.repeat_last_n if cfg.repeat_penalty != 1.0 else 0  # tokens the penalty looks at
        self.sampling = Sampling(
            float(cfg.repeat_penalty) if self.recent else 1.0,
            min(cfg.top_k, c.vocab_size),
            float(cfg.top_p),
            float(cfg.min_p),
            float(cfg.effective_temperature),
        )
        self.restart(streams, root)

    def restart(self, streams, root: np.random.SeedSequence | None = None) -> None:
        """Fresh rows, one per random stream, on the same weights (the next batch of answers)."""
        self.rngs = [row_rng(self.cfg.rng_seed, i, root) for i in streams]
        self.plan = self.K.prepare_decoding(self.mcfg, len(self.rngs), self.threads, self.fmt)
        self.h, self.c, self.rows = self._state(len(self.rngs))

    def _state(self, B: int):
        """Zero state (L, B, H) and scratch for B rows (kernels/decoding.py's Rows)."""
        from rnncli.kernels.decoding import Rows

        c, zeros = self.mcfg, self.K.zeros
        L, G, H, V, A, C = c.layers, c.gate_width, c.hidden, c.vocab_size, c.act_width, c.cstate_width
        rows = Rows(
            zeros(B, np.int64),
            zeros((B, c.embed)),
            zeros((B, G)),
            zeros((B, G)),
            zeros((B, A)),
            zeros((B, H)),
            zeros((B, C)),
            zeros((B, V)),
            zeros((B, V)),
            zeros((B, self.recent), np.int64),
            zeros((B, V if self.recent else 0), np.int32),
            zeros(B, np.int64),
        )
        return zeros((L, B, H)), zeros((L, B, C)), rows

    def prime(self, prompts: list[np.ndarray]) -> None:
        """Row b starts from prompts[b] (a single prompt: every row). Each distinct prompt is fed
        once, at batch 1, and its state copied to the rows that share it."""
        from rnncli.model.model import check_ids

        prompts = prompts * len(self.rngs) if len(prompts) == 1 else prompts
        fed = {}
        for b, ids in enumerate(prompts):
            ids = np.ascontiguousarray(ids, np.int64)
            if ids.tobytes() not in fed:
                check_ids(ids, self.mcfg.vocab_size)
                state = self._state(1)
                self.K.feed(
                    self.K.prepare_decoding(self.mcfg, 1, None, self.fmt),
                    self.cell,
                    self.weights,
                    *state,
                    self.K.asarray(ids),
                )
                fed[ids.tobytes()] = state
            h, c, one = fed[ids.tobytes()]
            for mine, theirs in (
                (self.h[:, b], h[:, 0]),
                (self.c[:, b], c[:, 0]),
                (self.rows.logits[b], one.logits[0]),
                (self.rows.recent[b], one.recent[0]),
                (self.rows.counts[b], one.counts[0]),
                (self.rows.seen[b : b + 1], one.seen[0:1]),
            ):
                self.K.copy_into(mine, theirs)

    def tokens(self, n: int, chunk: int = CHUNK) -> Iterator[np.ndarray]:
        """Sample n more tokens for every row; yields (k, B) arrays of ids, k <= chunk."""
        B = len(self.rngs)
        while n > 0:
            k = min(chunk, n)
            uniforms = np.empty((k, B))
            for b, g in enumerate(self.rngs):
                uniforms[:, b] = g.random(k)
            out = np.empty((k, B), np.int64)
            self.K.decode(
                self.plan, self.cell, self.weights, self.h, self.c, self.rows, self.sampling, uniforms, out
            )
            n -= k
            yield out


class StopScanner:
    """Finds the first stop string in text that arrives in pieces. Text that could still be the
    start of a stop string is held back until the next piece settles it."""

    def __init__(self, stops):
        self.stops, self.held = tuple(stops), ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """(text that is safe to show, whether a stop string was found: the text ends before it)."""
        text = self.held + piece
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.held = ""
            return text[: min(hits)], True
        keep = 0  # the longest end of text that begins some stop string
        for s in self.stops:
            for n in range(min(len(s) - 1, len(text)), keep, -1):
                if s.startswith(text[len(text) - n :]):
                    keep = n
                    break
        self.held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep], False

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


@dataclass
class Answer:
    """One finished continuation."""

    index: int  # 1-based: the sample's number, counted over all prompts
    prompt: str
    text: str = ""  # the continuation alone
    tokens: int = 0  # tokens generated (for a stop, up to the one that completed it)
    stop_reason: str = "length"  # length, stop (a stop string), time (--max-time)
    stats: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return dict(self.__dict__, chars=len(self.text))


class _Row:
    """One answer being made: its text decoder (stateful for bytes) and stop scanner."""

    def __init__(self, answer: Answer, tok, stops):
        self.answer, self.to_text = answer, tok.decoder()
        self.scanner = StopScanner(stops) if stops else None
        self.done, self.parts = False, []  # the text so far, joined once at the end

    def add(self, text: str) -> None:
        self.parts.append(text)

    def finish(self) -> str:
        """The answer's last text (held back by the stop scanner, or a byte sequence cut short,
        shown as U+FFFD), unless it ended on a stop string; joins its text."""
        rest = ""
        if self.answer.stop_reason != "stop":
            rest = (self.scanner.flush() if self.scanner else "") + self.to_text([], final=True)
            self.add(rest)
        self.answer.text = "".join(self.parts)
        return rest

    def take(self, ids: np.ndarray) -> str:
        """The text these new ids add; ends the row at a stop string."""
        if self.scanner is None:
            self.answer.tokens += len(ids)
            return self.to_text(ids)
        shown = []
        for t in ids:
            self.answer.tokens += 1
            text, hit = self.scanner.feed(self.to_text([t]))
            shown.append(text)
            if hit:
                self.done, self.answer.stop_reason = True, "stop"
                break
        return "".join(shown)


def generate(
    loaded,
    prompts: list[str],
    cfg: SampleConfig,
    on_warning: Callable[[str], None] | None = None,
    chunk: int = CHUNK,
) -> Iterator[tuple]:
    """Answers to prompts, each prompt cfg.num_samples times, BATCH answers decoded together.
    Yields ("piece", index, text) as an answer's text is made (stop strings ruled out first),
    ("answer", Answer) as each ends (in order), and last ("stats", dict) for the whole run.
    loaded: load.load_model's (model, tokenizer, metadata)."""
    model, tok, _ = loaded
    n_jobs, per = len(prompts) * cfg.num_samples, cfg.num_samples
    root, warned, totals = (
        np.random.SeedSequence(cfg.rng_seed),
        set(),
        dict.fromkeys(("prompt_tokens", "prompt_s", "tokens", "chars", "decode_s"), 0),
    )
    chunk = min(chunk, 16) if cfg.max_time else chunk  # the time limit is looked at between chunks
    start = time.perf_counter()
    for first in range(0, n_jobs, BATCH):
        batch = [prompts[i // per] for i in range(first, min(first + BATCH, n_jobs))]
        rows = [_Row(Answer(first + i + 1, p), tok, cfg.stop) for i, p in enumerate(batch)]
        ids = [_prompt_ids(tok, p, warned, on_warning) for p in batch]
        if first == 0:
            dec = Decoder(model, cfg, range(len(batch)), root)
        else:  # the weights laid out once, for every batch
            dec.restart(range(first, first + len(batch)), root)
        t0 = time.perf_counter()
        dec.prime(ids)
        t1 = time.perf_counter()
        first_token, made = None, 0
        # one token first, so that the time to it is the time to a token, not to a chunk
        for out in itertools.chain(dec.tokens(min(1, cfg.length)), dec.tokens(cfg.length - 1, chunk)):
            first_token, made = first_token or time.perf_counter() - t0, made + len(out)
            for b, row in enumerate(rows):
                if not row.done:
                    text = row.take(out[:, b])
                    row.add(text)
                    if text:
                        yield "piece", row.answer.index, text
            if all(row.done for row in rows):
                break
            if cfg.max_time and made < cfg.length and time.perf_counter() - t1 > cfg.max_time:
                for row in rows:
                    if not row.done:
                        row.done, row.answer.stop_reason = True, "time"
                break
        t2 = time.perf_counter()
        distinct = {a.tobytes(): len(a) for a in ids}
        stats = {
            "prompt_tokens": sum(distinct.values()),
            "prompt_s": t1 - t0,
            "first_token_s": first_token or 0.0,
            "tokens": sum(r.answer.tokens for r in rows),
            "decode_s": t2 - t1,
            "chars": 0,
        }
        for row in rows:
            rest = row.finish()
            if rest:
                yield "piece", row.answer.index, rest
            stats["chars"] += len(row.answer.text)
        for key in totals:
            totals[key] += stats[key]
        totals.setdefault(
            "first_token_s", stats["first_token_s"]
        )  # the first batch's: prompt fed, first token
        for row in rows:
            row.answer.stats = _rates(stats)
            yield "answer", row.answer
    yield "stats", dict(_rates(totals), wall_s=time.perf_counter() - start)


def _rates(s: dict) -> dict:
    """Speed figures as llama.cpp prints them, from token counts and seconds."""
    per = lambda n, t: n / t if t > 0 else None  # noqa: E731
    out = dict(
        s,
        prompt_tokens_per_s=per(s["prompt_tokens"], s["prompt_s"]),
        tokens_per_s=per(s["tokens"], s["decode_s"]),
        chars_per_s=per(s["chars"], s["decode_s"]),
    )
    return out


def _prompt_ids(tok, prompt: str, warned: set, on_warning) -> np.ndarray:
    """A prompt's ids; characters the model never saw are named once and left out; an empty
    prompt starts from a newline (or a space, or the first token)."""
    ids, missing = tok.encode(prompt)
    new = [m for m in missing if m not in warned]
    if new and on_warning:
        warned.update(new)
        on_warning(f"left out of the prompt, not in the model's vocabulary: {''.join(new)[:80]!r}")
    if len(ids) == 0:
        start = next((t for t in ("\n", " ") if t in tok.vocab), tok.vocab[0])
        ids = np.array([tok.vocab.index(start)])
    return np.asarray(ids, np.int64)
