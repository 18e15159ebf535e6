"""The char and word tokenizers applied to text that streams by in pieces, for rnncli/data/corpus.py:
the vocabulary and ids data.Tokenizer.build + encode would give for the whole text, in memory
bounded by the piece size."""

from __future__ import annotations

import codecs
import re
import tempfile

import numpy as np

from rnncli.base.errors import RnncliError
from rnncli.data.text import Tokenizer, _id_dtype, char_vocab, word_vocab

STEP = 1 << 16  # bytes tokenized at a time, so that numpy's temporaries stay in the CPU's cache
FLUSH = 1 << 22  # provisional word ids gathered before they are counted and written
UNICODE = 0x110000
HIGH = bytes(range(128, 256))
_WORD = re.compile(r"\w")  # data.WORD_RE's runs are made of these; any other character is a token by itself
_WORD_RUN = re.compile(r"\w*")
WORD8 = np.array([bool(_WORD.match(chr(b))) for b in range(256)])  # for code points 0-255
WORD_BYTES = bytes(np.flatnonzero(WORD8[:128]).astype(np.uint8))
# other characters become spaces, which split() drops
MASK8 = bytes(b if WORD8[b] else 32 for b in range(256))


def check(empty: bool, blank: bool) -> None:
    """The errors train.py has always given for a corpus with nothing to learn."""
    if empty:
        raise RnncliError("the corpus is empty")
    if blank:
        raise RnncliError("the corpus holds only whitespace: nothing to learn")


def utf8_pieces(raw_blocks, skip: int, hint: str, step: int, done: int = 0):
    """(bytes, text) pieces of at most about `step` bytes, each whole valid UTF-8 characters (a character
    split between blocks is carried over); text is the decoded str, or None for an ASCII piece. The first
    `skip` bytes (a UTF-8 byte-order mark) are dropped, and error offsets counted after them, as
    data.decode_text counts them, from `done` (where these blocks begin in the text)."""
    dec = codecs.getincrementaldecoder(
        "utf-8"
    )()  # done: bytes passed on so far, where the held-back ones begin
    for raw in raw_blocks:
        if skip:
            raw, skip = raw[skip:], max(0, skip - len(raw))
        for i in range(0, len(raw), step):
            piece = raw[i : i + step]
            held = dec.getstate()[0]
            if not held and piece.isascii():
                done += len(piece)
                yield piece, None
                continue
            try:
                text = dec.decode(piece)
            except UnicodeDecodeError as e:
                raise RnncliError(
                    f"the corpus is not UTF-8 text (bad byte at offset {done + e.start}){hint}"
                ) from None
            whole = held + piece
            whole = whole[: len(whole) - len(dec.getstate()[0])]
            done += len(whole)
            if whole:
                yield whole, text
    try:
        dec.decode(b"", final=True)
    except UnicodeDecodeError as e:
        raise RnncliError(
            f"the corpus is not UTF-8 text (bad byte at offset {done + e.start}){hint}"
        ) from None


def char_ids(passes, tokenizer: Tokenizer | None, out) -> tuple[Tokenizer, list[str], int]:
    """Char kind. passes(first) gives the pieces afresh: the first pass finds the code points present (ASCII
    bytes without decoding), the second maps each piece through a table of all code points into `out`."""
    present = np.zeros(UNICODE, bool)
    gone = HIGH  # bytes whose presence is known (or that do not start a character): deleted before looking
    for piece, text in passes(True):
        new = piece.translate(None, gone)
        if new:
            present[np.frombuffer(new, np.uint8)] = True
            gone = HIGH + bytes(np.flatnonzero(present[:128]).astype(np.uint8))
        if text is not None:
            codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
            present[codes[codes >= 128]] = True
    codes = np.flatnonzero(present)
    check(not len(codes), all(chr(c).isspace() for c in codes))
    tok = tokenizer or Tokenizer("char", char_vocab(present))
    dtype = _id_dtype(len(tok))
    table = np.full(UNICODE, -1, np.int32)  # code point -> id; -1: not in the vocabulary (dropped)
    table[[ord(ch) for ch in tok.vocab]] = np.arange(len(tok), dtype=np.int32)
    missing = [chr(c) for c in codes if table[c] < 0]
    if not missing:
        table = table.astype(dtype)
    n = 0
    for piece, text in passes(False):
        if text is None:
            ids = table[:128].take(np.frombuffer(piece, np.uint8))
        else:
            ids = table[np.frombuffer(text.encode("utf-32-le"), np.uint32)]
        if missing:
            ids = ids[ids >= 0].astype(dtype)
        out.write(ids)
        n += len(ids)
    return tok, missing, n


class Provisional(dict):
    """Word (its UTF-8 bytes) -> provisional id, given in order of first appearance, in one process; `strings`
    holds every token by provisional id (words as bytes, one-character tokens as str)."""

    def __init__(self):
        super().__init__()
        self.strings: list[bytes | str] = []
        self.slot = np.full(UNICODE, -1, np.int32)  # code point of a one-character token -> provisional id
        self.slot[:128][WORD8[:128]] = 0  # (word characters are never one: 0 is a placeholder)
        self.word = np.zeros(UNICODE, bool)
        self.word[:256] = WORD8
        self.known = np.zeros(UNICODE, bool)
        self.known[:128] = True

    def __missing__(self, word: bytes) -> int:
        i = self[word] = len(self.strings)
        self.strings.append(word)
        return i

    def classify(self, codes: np.ndarray) -> np.ndarray:
        """Whether each code point is a word character (re's \\w), learning new code points as they come."""
        for c in np.unique(codes[~self.known[codes]]):
            self.word[c], self.known[c] = bool(_WORD.match(chr(c))), True
            self.slot[c] = 0 if self.word[c] else -1
        return self.word[codes]

    def tokens(self, b: bytes, final: bool) -> tuple[np.ndarray, int]:
        """Provisional ids of the tokens of `b` (whole UTF-8 characters, starting at a token's start), up to
        its last non-word character (all of it when final), and how many bytes that is."""
        if b.isascii():
            # a word at the end may go on in the next piece
            used = len(b) if final else len(b.rstrip(WORD_BYTES))
            masked = b[:used].translate(MASK8)
            codes = np.frombuffer(b, np.uint8, count=used)
            isw = np.frombuffer(masked, np.uint8) != 32  # (n,) word characters
        else:
            codes = np.frombuffer(b.decode("utf-8").encode("utf-32-le"), np.uint32)
            isw = self.classify(codes)
            if not final:
                last = (~isw[::-1]).argmax()  # from the end, the first non-word character
                cut = 0 if isw[-1 - last] else len(codes) - last
                codes, isw = codes[:cut], isw[:cut]
            lens = 1 + sum((codes >= limit).view(np.uint8) for limit in (0x80, 0x800, 0x10000))  # UTF-8 bytes
            used = int(lens.sum(dtype=np.int64))
            masked = np.where(
                np.repeat(isw, lens), np.frombuffer(b, np.uint8, count=used), np.uint8(32)
            ).tobytes()
        words = masked.split()
        # a token starts at every character but the second and later of a run
        start = np.empty(len(isw), bool)
        np.logical_and(isw[1:], isw[:-1], out=start[1:])
        np.logical_not(start, out=start)
        start[:1] = True
        pos = np.flatnonzero(start)  # (tokens,)
        ids = self.slot[codes[pos]]  # one-character tokens (a word's first character reads 0, replaced below)
        if (ids < 0).any():
            for c in np.unique(codes[pos][ids < 0]):
                self.slot[c] = len(self.strings)
                self.strings.append(chr(c))
            ids = self.slot[codes[pos]]
        ids[isw[pos]] = np.fromiter(map(self.__getitem__, words), np.int32, len(words))
        return ids, used

    def run(self, pieces):
        """Provisional ids of the tokens of the text that comes in (bytes, text) pieces, piece by piece."""
        parts = []  # the carried-over start of a word, then the piece that may end it
        for piece, text in pieces:
            parts.append(piece)
            if len(parts) > 1 and not _breaks(piece, text):
                continue  # a word longer than a piece goes on
            b = b"".join(parts)
            ids, used = self.tokens(b, final=False)
            parts = [b[used:]] if used < len(b) else []
            yield ids
        if parts:
            yield self.tokens(b"".join(parts), final=True)[0]


def _breaks(piece: bytes, text: str | None) -> bool:
    """Whether a piece holds a character other than a word character."""
    return bool(piece.translate(None, WORD_BYTES)) if text is None else _WORD_RUN.fullmatch(text) is None


def word_ids(
    pieces, max_vocab: int, tokenizer: Tokenizer | None, out, folder
) -> tuple[Tokenizer, list[str], int]:
    """Word kind. One pass gives every token a provisional id (one dictionary look-up per word), writes them
    to a temp file and counts them; the vocabulary then maps provisional ids to ids in a second, numpy-only
    pass over that file into `out`."""
    with tempfile.TemporaryFile(dir=folder) as tmp:
        return finish_words([provisional(pieces, tmp)], max_vocab, tokenizer, out)


def provisional(pieces, tmp) -> tuple[list[str], np.ndarray, object]:
    """The tokens of the text in `pieces` by provisional id (first appearance), their counts, and `tmp`
    (a binary file) holding the provisional id (int32) of every token in order."""
    prov = Provisional()
    counts, gathered, size = np.zeros(0, np.int64), [], 0

    def flush():  # the ids gathered so far, to the temp file and into the counts
        nonlocal counts, gathered
        ids = np.concatenate(gathered) if gathered else np.zeros(0, np.int32)
        tmp.write(ids)
        more = np.bincount(ids, minlength=len(prov.strings))
        counts = np.concatenate([counts, np.zeros(len(more) - len(counts), np.int64)]) + more
        gathered = []

    for ids in prov.run(pieces):
        gathered.append(ids)
        size += len(ids)
        if size >= FLUSH:
            flush()
            size = 0
    flush()
    prov.clear()  # (the words as bytes go as they are decoded)
    strings = prov.strings
    for i, s in enumerate(strings):
        if isinstance(s, bytes):
            strings[i] = s.decode("utf-8")
    return strings, counts, tmp


def finish_words(parts, max_vocab: int, tokenizer: Tokenizer | None, out) -> tuple[Tokenizer, list[str], int]:
    """From the provisional() results of consecutive parts of the text: the vocabulary (or `tokenizer`'s),
    the final ids of all parts in order into `out`, what the vocabulary lacks, and the token count."""
    index: dict[str, int] = {}
    local = []  # per part: its provisional id -> the merged one
    for strings, _, _ in parts:
        local.append(np.fromiter((index.setdefault(t, len(index)) for t in strings), np.int64, len(strings)))
    strings = list(index)
    counts = np.zeros(len(strings), np.int64)
    for (_, c, _), to in zip(parts, local):
        np.add.at(counts, to, c)
    check(not strings, all(t.isspace() for t in strings))
    tok = tokenizer or Tokenizer("word", word_vocab(_candidates(strings, counts, max_vocab), max_vocab))
    vocab = {t: i for i, t in enumerate(tok.vocab)}
    final = np.array([vocab.get(t, 0) for t in strings], _id_dtype(len(tok)))  # merged id -> id (0: <unk>)
    n = 0
    for (_, _, tmp), to in zip(parts, local):
        table = final[to]
        tmp.seek(0)
        while chunk := tmp.read(4 * FLUSH):
            out.write(table[np.frombuffer(chunk, np.int32)])
            n += len(chunk) // 4
    return tok, sorted(t for t in strings if t not in vocab), n


def _candidates(strings: list[str], counts: np.ndarray, max_vocab: int) -> dict[str, int]:
    """The counts of the tokens that can be among the max_vocab - 1 commonest (ties broken by the token, as
    word_vocab does), so that word_vocab sorts thousands of tokens, not millions."""
    k = max_vocab - 1
    if not 0 < k < len(strings):
        return dict(zip(strings, counts.tolist()))
    least = np.partition(counts, len(counts) - k)[len(counts) - k]  # the kth largest count
    above = np.flatnonzero(counts > least).tolist()
    tied = sorted(strings[i] for i in np.flatnonzero(counts == least).tolist())[: k - len(above)]
    return {**{strings[i]: int(counts[i]) for i in above}, **dict.fromkeys(tied, int(least))}
