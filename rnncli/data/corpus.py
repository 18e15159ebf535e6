"""Corpora larger than memory: token ids made in a streaming pass or two over the files, kept in a
per-user cache file that later runs memory-map. The rules stay data.Tokenizer's; this module only
applies them in blocks."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import unicodedata
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnncli.base.errors import RnncliError
from rnncli.base.files import replace_atomic
from rnncli.base.paths import cache_root
from rnncli.data import streaming, word_split
from rnncli.data.streaming import check
from rnncli.data.text import BOMS, Tokenizer, _id_dtype, decode_text, open_file, reading

FORMAT = 2  # bump when the cache's files or the tokenization change (2: a CRC-32 of the ids)
EDGE = 1 << 20  # bytes hashed at each end of a file for the cache key
HINT = "; use --tokenizer byte for arbitrary bytes"


@dataclass
class Corpus:
    """Token ids (read-only, an np.memmap of the cache file for real files), the tokenizer that made them,
    the corpus's fingerprint {"sha256", "bytes"}, what the vocabulary lacks (as Tokenizer.encode lists it),
    and whether it came from the cache."""

    ids: np.ndarray
    tokenizer: Tokenizer
    fingerprint: dict
    missing: list[str]
    hit: bool = False
    note: str | None = None  # for people: why the cache was not used, when it could not be


class _CacheUnwritable(Exception):
    """Writing into the cache folder failed (no space, a quota): the build is redone uncached."""


class _Damaged(Exception):
    """A cache entry that is not what was written there (cut short, garbage, unreadable): rebuilt."""


def load_corpus(
    sources: list[str],
    kind: str,
    max_vocab: int,
    tokenizer: Tokenizer | None = None,
    cache: bool = True,
    block: int = 1 << 24,
) -> Corpus:
    """The token ids of the concatenated `sources` (`-` is standard input, never cached), with a vocabulary
    built as Tokenizer.build(kind, text, max_vocab) would, or `tokenizer`'s. Files are read `block` bytes at a
    time. Errors are today's: bad UTF-8 (with the --tokenizer byte hint unless a tokenizer is given, as for
    a resumed run), an empty corpus, one of only whitespace."""
    if tokenizer is not None and tokenizer.kind != kind:
        raise ValueError(f"a {tokenizer.kind} tokenizer given for kind {kind}")
    files = []
    try:
        for src in sources:  # every file opened first: a missing one is named before any reading
            files.append(_Source(src))
        folder = _folder() if cache and all(f.stat for f in files) else None
        key = _key(files, kind, max_vocab) if folder else None
        damaged = None
        try:
            found = _load(folder, key, kind, tokenizer) if folder else None
        except _Damaged as e:
            found, damaged = (
                None,
                f"the token cache entry {key[:12]}... in {folder} was damaged ({e}); tokenized again",
            )
        if found:
            return found
        try:
            made = _build(files, kind, max_vocab, tokenizer, folder, key, max(1, block))
        except _CacheUnwritable as e:  # a full disk or quota where the cache lives: a temp file will do
            made = _build(files, kind, max_vocab, tokenizer, None, None, max(1, block))
            damaged = f"the token cache in {folder} could not be written ({e}); this run's ids are not kept"
        made.note = damaged
        return made
    finally:
        for f in files:
            f.file.close()


class _Source:
    """One open source. Standard input, a pipe or a FIFO is first copied to an unnamed temp file, on disk
    rather than in memory, so that it can be read twice; it is never cached (nothing says when it is the
    same text again)."""

    def __init__(self, src: str):
        self.name = src
        stream = sys.stdin.buffer if src == "-" else open_file(src)
        if src != "-" and stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            self.file, self.stat = stream, self._stat(stream)
            return
        self.file, self.stat = tempfile.TemporaryFile(), None
        try:
            reading(src, shutil.copyfileobj, stream, self.file, 1 << 20)
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()

    def _stat(self, file=None):
        st = os.fstat((file or self.file).fileno())
        return st.st_size, st.st_mtime_ns

    def blocks(self, block: int):
        self.file.seek(0)
        while chunk := reading(self.name, self.file.read, block):
            yield chunk

    def unchanged(self) -> None:
        if self.stat and self._stat() != self.stat:
            raise RnncliError(f"{self.name} changed while it was being read; run again")


def _raw(files: list[_Source], block: int, sha=None):
    """The concatenated bytes, block by block; `sha` hashes them in a second thread (hashlib lets go
    of the GIL)."""
    if sha is None:
        for f in files:
            yield from f.blocks(block)
        return
    with ThreadPoolExecutor(1) as pool:
        pending = None
        for f in files:
            for raw in f.blocks(block):
                if pending:
                    pending.result()
                pending = pool.submit(sha.update, raw)
                yield raw
        if pending:
            pending.result()


def _build(files, kind, max_vocab, tokenizer, folder, key, block) -> Corpus:
    """Tokenize the sources into a temp file, then move it into the cache (when there is one) and map it."""
    hint = "" if tokenizer is not None else HINT
    head = b""
    for f in files:  # the first 4 bytes of the concatenation say whether there is a byte-order mark
        f.file.seek(0)
        head += reading(f.name, f.file.read, 4 - len(head))
    encoding = next((enc for bom, enc in BOMS if head.startswith(bom)), "utf-8")
    sha, tmp = _Hash(), None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}." if key else "rnncli-", suffix=".ids")
        with open(fd, "wb", buffering=1 << 20) as out:
            if kind == "byte":
                made = _bytes(files, block, sha, tokenizer, out)
            elif (
                encoding != "utf-8" and encoding != "utf-8-sig"
            ):  # UTF-16/32: in memory, as data.decode_text does
                made = _in_memory(files, kind, max_vocab, block, sha, tokenizer, hint, out)
            else:
                skip = 3 if encoding == "utf-8-sig" else 0

                def passes(first: bool):  # the text in pieces; hashed on the first pass
                    step = min(block, streaming.STEP)
                    return streaming.utf8_pieces(_raw(files, block, sha if first else None), skip, hint, step)

                workers = word_split.workers_for(files[0].stat[0]) if len(files) == 1 and files[0].stat else 1
                if kind == "char":
                    made = streaming.char_ids(passes, tokenizer, out)
                elif workers > 1:  # a large file: its first pass in several processes
                    parts = word_split.provisional_parts(
                        files[0].name,
                        files[0].stat[0],
                        skip,
                        hint,
                        folder,
                        workers,
                        files[0].file,
                        lambda: deque(_raw(files, block, sha), 0),
                    )
                    try:
                        made = streaming.finish_words(parts, max_vocab, tokenizer, out)
                    finally:
                        for *_, part in parts:
                            part.close()
                else:
                    made = streaming.word_ids(passes(True), max_vocab, tokenizer, out, folder)
        for f in files:
            f.unchanged()
        tok, missing, n = made
        fingerprint = {"sha256": sha.sha.hexdigest(), "bytes": sha.bytes}
        dtype = np.dtype(_id_dtype(len(tok)))
        if key is None:
            return Corpus(_map(tmp, dtype, n), tok, fingerprint, missing)
        path = folder / f"{key}.ids"
        _clear(path)
        os.replace(tmp, path)
        ids = _map(path, dtype, n)
        meta = {
            "format": FORMAT,
            "dtype": dtype.str,
            "length": n,
            "crc32": zlib.crc32(ids),
            "tokenizer": tok.to_json(),
            "fingerprint": fingerprint,
            "missing": missing,
            "own_vocabulary": tokenizer is None,
        }
        _write_json(folder / f"{key}.json", meta)
        return Corpus(ids, tok, fingerprint, missing)
    except OSError as e:
        if folder is not None:
            raise _CacheUnwritable(e.strerror or str(e)) from None
        raise RnncliError(f"cannot write the token ids in {tempfile.gettempdir()}: {e.strerror}") from None
    finally:
        if tmp and os.path.exists(tmp):  # (the ids stay mapped after this when there is no cache)
            os.unlink(tmp)


class _Hash:
    """The corpus's fingerprint as it streams by: sha256 and size."""

    def __init__(self):
        self.sha, self.bytes = hashlib.sha256(), 0

    def update(self, data: bytes) -> None:
        self.sha.update(data)
        self.bytes += len(data)


def _bytes(files, block, sha, tokenizer, out):
    """Byte kind: the ids are the bytes themselves."""
    n, blank = 0, True
    for raw in _raw(files, block, sha):
        out.write(raw)
        n += len(raw)
        blank = blank and raw.isspace()
    check(n == 0, blank)
    return tokenizer or Tokenizer("byte"), [], n


def _in_memory(files, kind, max_vocab, block, sha, tokenizer, hint, out):
    """A corpus that starts with a UTF-16/UTF-32 byte-order mark is read whole and tokenized as train.py
    always has (such exports are rare, and the codecs are not worth streaming)."""
    data = b"".join(_raw(files, block))
    sha.update(data)
    text = decode_text(data, "the corpus", hint)
    check(not text, text.isspace())
    tok = tokenizer or Tokenizer.build(kind, text, max_vocab)
    ids, missing = tok.encode(text)
    out.write(ids)
    return tok, missing, len(ids)


def _folder() -> Path | None:
    """$RNNCLI_CACHE_DIR/tokens (or the user cache folder's), if it can be written."""
    folder = cache_root() / "tokens"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


def _key(files: list[_Source], kind: str, max_vocab: int) -> str:
    """What the ids depend on: each file's path, device, inode, size, modification and change times and
    first and last MiB (hashing the whole file is what a cache hit must avoid; an edit that keeps size
    and mtime still moves ctime), the kind (and max_vocab, for word), and the Unicode tables (\\w,
    isspace). Not a given vocabulary: _load compares that with the entry's, so a resumed run finds
    the ids its first run made."""
    h = hashlib.sha256(
        json.dumps([FORMAT, kind, max_vocab if kind == "word" else 0, unicodedata.unidata_version]).encode()
    )
    for f in files:
        st = os.fstat(f.file.fileno())
        h.update(
            json.dumps([os.path.abspath(f.name), st.st_dev, st.st_ino, *f.stat, st.st_ctime_ns]).encode()
        )
        f.file.seek(0)
        h.update(reading(f.name, f.file.read, EDGE))
        f.file.seek(max(0, f.stat[0] - EDGE))
        h.update(reading(f.name, f.file.read, EDGE))
    return h.hexdigest()


def _load(folder: Path, key: str, kind: str, tokenizer: Tokenizer | None) -> Corpus | None:
    """The cached corpus; None when there is no entry, or one for another vocabulary; _Damaged when
    the entry is not what was written (its ids are checked against their CRC-32: a wrong id would
    index past the embedding)."""
    try:
        meta = json.loads((folder / f"{key}.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise _Damaged(f"{key}.json: {getattr(e, 'strerror', None) or e}") from None
    try:
        dtype, n, path = np.dtype(meta["dtype"]), int(meta["length"]), folder / f"{key}.ids"
        if tokenizer is not None and meta["tokenizer"] != tokenizer.to_json():
            return None  # made with another vocabulary: made again with this one (and kept instead)
        if tokenizer is None and meta.get("own_vocabulary") is not True:
            return None  # a resumed run's ids, in the vocabulary of another text: a new run builds its own
        tok = tokenizer or Tokenizer.from_json(meta["tokenizer"])
        fingerprint = {
            "sha256": str(meta["fingerprint"]["sha256"]),
            "bytes": int(meta["fingerprint"]["bytes"]),
        }
        missing = meta["missing"]
        if (
            meta["format"] != FORMAT
            or tok.kind != kind
            or dtype != np.dtype(_id_dtype(len(tok)))
            or not isinstance(missing, list)
            or path.stat().st_size != n * dtype.itemsize
        ):
            raise ValueError("its parts disagree")
        ids = _map(path, dtype, n)
        if zlib.crc32(ids) != meta["crc32"]:
            raise ValueError("the ids differ from their checksum")
        return Corpus(ids, tok, fingerprint, [str(m) for m in missing], hit=True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise _Damaged(getattr(e, "strerror", None) or str(e) or type(e).__name__) from None


def _map(path, dtype: np.dtype, n: int) -> np.ndarray:
    if n == 0:  # (mmap cannot map an empty file)
        ids = np.zeros(0, dtype)
        ids.flags.writeable = False
        return ids
    return np.memmap(path, dtype, "r", shape=(n,))


def _clear(path: Path) -> None:
    """A folder where a cache file belongs is removed (the cache folder is ours), so that the file
    can replace it."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)


def _write_json(path: Path, meta: dict) -> None:
    _clear(path)
    replace_atomic(path, lambda f: f.write(json.dumps(meta).encode()))
