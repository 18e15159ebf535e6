"""Tokenizers (char, byte, word), corpus reading and char-rnn's stream batching.

Token ids live in compact numpy arrays (uint8/uint16/int32), never in Python lists of the text.
"""

from __future__ import annotations

import codecs
import re
import sys
from collections import Counter
from typing import BinaryIO

import numpy as np

from rnncli.base import pathcheck
from rnncli.base.errors import RnncliError

UNK = "<unk>"  # the word tokenizer's first entry: words outside the vocabulary

WORD_RE = re.compile(r"\w+|[^\w\s]|\s")


def read_bytes(sources: list[str]) -> bytes:
    """The concatenated bytes of files, `-` meaning standard input."""
    chunks = []
    for src in sources:
        if src == "-":
            chunks.append(sys.stdin.buffer.read())
            continue
        with open_file(src) as f:
            chunks.append(reading(src, f.read))
    return b"".join(chunks)


def open_file(src: str) -> BinaryIO:
    """A corpus file opened for reading, or an RnncliError that names it."""
    pathcheck.readable_file(src, "text file")
    return reading(src, open, src, "rb")


def reading(src: str, fn, *args):
    """fn(*args), its OSError turned into an RnncliError that names the file `src`."""
    try:
        return fn(*args)
    except FileNotFoundError:
        raise RnncliError(f"no such file: {src}") from None
    except OSError as e:
        raise RnncliError(f"cannot read {src}: {e.strerror}") from None


# Byte-order marks, longest first (UTF-32 LE's begins with UTF-16 LE's): Windows editors write them.
BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]


def decode_text(data: bytes, what: str = "the input", hint: str = "") -> str:
    """Text from bytes: UTF-8, or UTF-16/UTF-32 when a byte-order mark says so (the mark dropped).
    `hint` ends the error message (what the caller's user can do about it)."""
    encoding = next((enc for bom, enc in BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        name = encoding.upper().replace("-SIG", "")
        raise RnncliError(f"{what} is not {name} text (bad byte at offset {e.start}){hint}") from None


def text_for(kind: str, data: bytes, what: str = "the input", hint: str = "") -> bytes | str:
    """What a tokenizer of this kind reads from raw bytes: the bytes themselves, or decoded text."""
    return data if kind == "byte" else decode_text(data, what, hint)


def _id_dtype(vocab_size: int):
    return np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.int32


def char_vocab(counts: np.ndarray) -> list[str]:
    """The char vocabulary: every code point whose count (or presence flag) is nonzero, in code order."""
    return [chr(c) for c in np.flatnonzero(counts)]


def word_vocab(counts: dict[str, int], max_vocab: int) -> list[str]:
    """The word vocabulary: <unk>, then the max_vocab - 1 commonest tokens (ties by token) in sorted order.
    Tokens that cannot be among them may be left out of `counts` (rnncli/data/streaming.py does)."""
    common = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max_vocab - 1]
    return [UNK] + sorted(tok for tok, _ in common)


class Tokenizer:
    """Maps text to ids and back. kind: char (Unicode code points), byte (0..255) or word
    (runs of word characters, single punctuation marks and single whitespace characters)."""

    def __init__(self, kind: str, vocab: list[str] | None = None):
        self.kind = kind
        self.vocab = [chr(b) for b in range(256)] if kind == "byte" else list(vocab or [])
        self._index = {tok: i for i, tok in enumerate(self.vocab)} if kind == "word" else None
        if kind == "char":
            self._codes = np.array([ord(ch) for ch in self.vocab], np.uint32)

    @classmethod
    def build(cls, kind: str, text: bytes | str, max_vocab: int = 20000) -> "Tokenizer":
        """A tokenizer whose vocabulary covers `text` (str, or bytes to decode; for word: the
        max_vocab - 1 commonest words)."""
        if kind == "byte":
            return cls("byte")
        text = decode_text(text, "the corpus") if isinstance(text, bytes) else text
        if kind == "char":
            return cls("char", char_vocab(np.bincount(np.frombuffer(text.encode("utf-32-le"), np.uint32))))
        return cls("word", word_vocab(Counter(m.group() for m in WORD_RE.finditer(text)), max_vocab))

    def to_json(self) -> dict:
        return {"kind": self.kind} if self.kind == "byte" else {"kind": self.kind, "vocab": self.vocab}

    @classmethod
    def from_json(cls, data: dict) -> "Tokenizer":
        return cls(data["kind"], data.get("vocab"))

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, data: bytes | str) -> tuple[np.ndarray, list[str]]:
        """Ids of the tokens of `data`, and the distinct characters (char) or words (word) that are
        not in the vocabulary: char drops them, word maps them to <unk>."""
        dtype = _id_dtype(len(self))
        if self.kind == "byte":
            raw = data.encode("utf-8") if isinstance(data, str) else data
            return np.frombuffer(raw, np.uint8).copy(), []
        text = data if isinstance(data, str) else decode_text(data)
        if self.kind == "char":
            codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
            pos = np.minimum(np.searchsorted(self._codes, codes), len(self._codes) - 1)
            known = self._codes[pos] == codes if len(codes) else np.zeros(0, bool)
            missing = sorted({chr(c) for c in np.unique(codes[~known])})
            return pos[known].astype(dtype), missing
        missing: set[str] = set()

        def ids():
            for m in WORD_RE.finditer(text):
                i = self._index.get(m.group())
                if i is None:
                    missing.add(m.group())
                    i = 0
                yield i

        arr = np.fromiter(ids(), dtype=dtype)
        return arr, sorted(missing)

    def decoder(self):
        """A function (ids, final=False) -> text, keeping state across calls (for bytes split inside
        a UTF-8 character while streaming; with final, a sequence left unfinished shows as U+FFFD)."""
        if self.kind == "byte":
            dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
            return lambda ids, final=False: dec.decode(bytes(int(i) for i in ids), final)
        vocab = self.vocab
        return lambda ids, final=False: "".join(vocab[int(i)] for i in ids)


def missing_note(kind: str, missing: list[str]) -> str:
    """What people are told of the tokens a text has and a vocabulary lacks (Tokenizer.encode's list)."""
    if kind == "char":
        return (
            f"{len(missing)} characters (left out) not in the model's vocabulary: {''.join(missing)[:80]!r}"
        )
    shown = ", ".join(repr(w) for w in missing[:12]) + (
        f" and {len(missing) - 12} more" if len(missing) > 12 else ""
    )
    return f"{len(missing)} words (read as <unk>) not in the model's vocabulary: {shown}"


def count_chars(data: bytes | str) -> int:
    """Characters in a text: code points, or for bytes the bytes that begin a UTF-8 character."""
    if isinstance(data, str):
        return len(data)
    arr = np.frombuffer(data, np.uint8)
    return int(np.count_nonzero((arr & 0xC0) != 0x80))


def split_val(ids: np.ndarray, val_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """The last val_frac of the tokens is held out for validation."""
    n_val = int(round(len(ids) * val_frac))
    return ids[: len(ids) - n_val], ids[len(ids) - n_val :]


# a validation scores at most this many held-out tokens (from the split's start): enough for a
# steady figure, and a 1 GB corpus's 5% would take minutes at every validation
VAL_MAX_TOKENS = 1 << 18


def val_streams(val_ids: np.ndarray, batch: int, seq: int) -> "Streams":
    """The layout a validation scores the held-out split in (train's, and eval --held-out's)."""
    val_ids = val_ids[:VAL_MAX_TOKENS]
    return Streams(val_ids, max(1, min(batch, (len(val_ids) - 1) // seq)), seq)


def count_token_chars(tokenizer: "Tokenizer", ids: np.ndarray) -> int:
    """Characters that token ids stand for (a word model's <unk> counts as one)."""
    if tokenizer.kind == "char":
        return len(ids)
    if tokenizer.kind == "byte":
        return count_chars(np.asarray(ids, np.uint8).tobytes())
    lengths = np.array([1] + [len(t) for t in tokenizer.vocab[1:]], np.int64)
    return int(lengths[np.asarray(ids, np.int64)].sum())


def check_val_split(n_val: int, seq: int) -> None:
    """Refuse a validation split that is not empty yet shorter than one window (nothing to score)."""
    if 0 < n_val <= seq:
        raise RnncliError(
            f"the corpus is too short to validate on: its validation split ({n_val} tokens) is shorter "
            f"than one --seq {seq} window; give more text, raise --val-frac or use --val-frac 0"
        )


class Streams:
    """char-rnn's layout: the tokens cut into B contiguous streams, read T at a time. Window w is
    (ids, targets), each (T, B), with targets the next token of each id."""

    def __init__(self, ids: np.ndarray, batch: int, seq: int, part: tuple[int, int] | None = None):
        """part: read only streams [b0, b1) of the batch (one rank's share; views, nothing copied)."""
        b0, b1 = part or (0, batch)
        self.B, self.T = b1 - b0, seq
        self.length = (len(ids) - 1) // batch  # tokens per stream
        n = self.length * batch
        # (more streams than tokens: no window; and numpy caps an axis)
        shape = (batch, self.length) if self.length else (0, 0)
        self.x = ids[:n].reshape(shape)[b0:b1]
        self.y = ids[1 : n + 1].reshape(shape)[b0:b1]
        self.n_windows = self.length // seq

    def window(self, w: int, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        a = w * self.T
        b = a + (width or self.T)
        return (
            np.ascontiguousarray(self.x[:, a:b].T, dtype=np.int64),
            np.ascontiguousarray(self.y[:, a:b].T, dtype=np.int64),
        )

    def all_windows(self):
        """Every window in order, then a shorter last one with the remaining tokens, if any."""
        for w in range(self.n_windows):
            yield self.window(w)
        rest = self.length - self.n_windows * self.T
        if rest:
            yield self.window(self.n_windows, rest)
