"""What the corpus tests share (tests/test_corpus.py, tests/test_token_cache.py): the sample corpora, a
text of awkward characters, the in-memory path the streaming tokenizer must equal, and a fresh token
cache folder for each test."""

import hashlib
from pathlib import Path

import numpy as np

from rnncli.data.text import Tokenizer, read_bytes, text_for

SAMPLES = sorted(str(p) for p in (Path(__file__).parent.parent / "sample_corpora").glob("*.txt"))
KINDS = ("char", "byte", "word")
# multi-byte characters (2, 3 and 4 bytes), words of non-ASCII letters and digits, Unicode spaces, marks, CRLF
TRICKY = (
    "Ünïcödé wörds: naïve café, 東京タワー and ١٢٣ digits_with_underscores.\r\n"
    "\u00a0non-breaking\u2028line\u3000ideographic\x1cseparator \U0001f600😀emoji\tx²+y³=z\u0301;\n"
    "longwordlongwordlongwordlongword ÄÖÜäöüß ok?! «quotes» — dash… \ufeffzero-width\u200bjoin\n"
)


def fresh_cache(tmp_path, monkeypatch):
    """A test's own token cache folder (each test module's autouse `cache_dir` fixture)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("RNNCLI_CACHE_DIR", str(folder))
    return folder / "tokens"


def in_memory(sources, kind, max_vocab=20000, tokenizer=None):
    """What train.py computes today."""
    data = read_bytes(sources)
    text = text_for(kind, data, "the corpus")
    tok = tokenizer or Tokenizer.build(kind, text, max_vocab)
    ids, missing = tok.encode(text)
    return tok, ids, missing, {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def assert_same(got, sources, kind, max_vocab=20000, tokenizer=None):
    tok, ids, missing, fingerprint = in_memory(sources, kind, max_vocab, tokenizer)
    assert got.tokenizer.kind == kind and got.tokenizer.vocab == tok.vocab
    assert got.ids.dtype == ids.dtype and np.array_equal(got.ids, ids)
    assert got.missing == missing and got.fingerprint == fingerprint
    assert not got.ids.flags.writeable


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)
