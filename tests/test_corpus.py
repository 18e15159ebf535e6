"""The streaming tokenizer and its token cache (rnncli/data/corpus.py, rnncli/data/streaming.py)
against the in-memory path it replaces (Tokenizer.build + encode over read_bytes, hashlib).
The slow test: python -m pytest --run-slow tests/test_corpus.py"""

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnncli.base.errors import RnncliError
from rnncli.data import corpus, streaming
from rnncli.data.corpus import load_corpus
from rnncli.data.text import Tokenizer, decode_text, read_bytes, text_for

SAMPLES = sorted(str(p) for p in (Path(__file__).parent.parent / "sample_corpora").glob("*.txt"))
KINDS = ("char", "byte", "word")
# multi-byte characters (2, 3 and 4 bytes), words of non-ASCII letters and digits, Unicode spaces, marks, CRLF
TRICKY = (
    "Ünïcödé wörds: naïve café, 東京タワー and ١٢٣ digits_with_underscores.\r\n"
    "\u00a0non-breaking\u2028line\u3000ideographic\x1cseparator \U0001f600😀emoji\tx²+y³=z\u0301;\n"
    "longwordlongwordlongwordlongword ÄÖÜäöüß ok?! «quotes» — dash… \ufeffzero-width\u200bjoin\n"
)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
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


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("block", [4099, 1 << 24])
def test_sample_corpora_match_the_in_memory_path(kind, block):
    got = load_corpus(SAMPLES, kind, 300, block=block)  # max_vocab 300: words beyond it are missing
    assert isinstance(got.ids, np.memmap) and not got.hit
    assert_same(got, SAMPLES, kind, 300)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("block", [1, 2, 3, 5, 7, 64])
def test_characters_and_words_split_across_blocks(tmp_path, monkeypatch, kind, block):
    monkeypatch.setattr(streaming, "FLUSH", 50)  # provisional word ids written and read back 50 at a time
    path = write(tmp_path, "tricky.txt", TRICKY * 3)
    assert_same(load_corpus([path], kind, 20, block=block, cache=False), [path], kind, 20)


@pytest.mark.parametrize("kind", KINDS)
def test_several_files_join_a_character_and_a_word_across_their_boundary(tmp_path, kind):
    data = TRICKY.encode()
    cut = data.index("東".encode()) + 1  # inside a 3-byte character
    word = data.index(b"longword") + 4
    files = [
        write(tmp_path, "a", data[:cut]),
        write(tmp_path, "b", data[cut:word]),
        write(tmp_path, "e", b""),
        write(tmp_path, "c", data[word:]),
    ]
    for block in (3, 7, 1 << 20):
        assert_same(load_corpus(files, kind, 20000, block=block), files, kind)


def test_words_longer_than_a_piece_and_a_text_without_a_break(tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "STEP", 5)
    for text in ["x" * 100 + " y " + "é" * 50 + "z" * 33, "w" * 200, "ü" * 77]:
        path = write(tmp_path, "long.txt", text)
        for block in (3, 64):
            assert_same(load_corpus([path], "word", 20, block=block, cache=False), [path], "word", 20)


@pytest.mark.parametrize("kind", ["char", "word"])
def test_a_given_tokenizer_drops_or_unks_what_it_lacks(tmp_path, kind):
    tokenizer = Tokenizer.build(kind, "naïve café and the cat\n", 20000)
    path = write(tmp_path, "new.txt", TRICKY)
    got = load_corpus([path], kind, 5, tokenizer=tokenizer, block=7)
    assert got.tokenizer is tokenizer and got.missing
    assert_same(got, [path], kind, tokenizer=tokenizer)
    again = load_corpus([path], kind, 5, tokenizer=tokenizer)
    assert again.hit and again.missing == got.missing and np.array_equal(again.ids, got.ids)


def test_max_vocab_keeps_the_commonest_words_with_ties_broken_as_build_does(tmp_path):
    path = write(tmp_path, "ties.txt", "b a c b a d e e f\n" * 3 + "g h")
    many = write(tmp_path, "once.txt", " ".join(f"w{i * 7919 % 1000}" for i in range(1000)))  # 1000 ties
    for max_vocab in (1, 2, 3, 4, 5, 6, 9, 50):
        assert_same(load_corpus([path], "word", max_vocab, block=3), [path], "word", max_vocab)
        assert_same(load_corpus([many], "word", max_vocab), [many], "word", max_vocab)


def test_bad_utf8_names_the_same_offset_as_decode_text(tmp_path):
    rng = np.random.default_rng(0)
    good = TRICKY.encode()
    cases = [
        good[:10] + b"\xff" + good[10:],
        good + b"\xe2\x82",
        b"\xe2\x82a",
        b"ok" + "é".encode()[:1],
        b"\xef\xbb\xbfab\xffc",
        good[:40] + b"\xc0\xaf",
        b"\xed\xa0\x80 surrogate",
        b"\xf4\x90\x80\x80",
    ]
    while len(cases) < 50:  # random damage: a byte replaced (kept when that makes the text invalid)
        b = bytearray(good)
        b[rng.integers(len(b))] = rng.integers(128, 256)
        try:
            bytes(b).decode()
        except UnicodeDecodeError:
            cases.append(bytes(b))
    for i, data in enumerate(cases):
        with pytest.raises(RnncliError) as want:
            decode_text(data, "the corpus", corpus.HINT)
        path = write(tmp_path, f"bad{i}.txt", data)
        for kind, block in [("char", 7), ("word", 3), ("char", 1 << 20)]:
            with pytest.raises(RnncliError) as got:
                load_corpus([path], kind, 100, block=block)
            assert str(got.value) == str(want.value)
            assert "; use --tokenizer byte for arbitrary bytes" in str(got.value)
    resumed = Tokenizer.build("char", "abc")  # a resumed run: no advice to change the tokenizer
    with pytest.raises(RnncliError, match=r"offset 1\)$"):
        load_corpus([write(tmp_path, "r.txt", b"a\xffb")], "char", 100, tokenizer=resumed)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_and_whitespace_only_corpora(tmp_path, kind):
    with pytest.raises(RnncliError, match="^the corpus is empty$"):
        load_corpus([write(tmp_path, "e", b""), write(tmp_path, "f", b"")], kind, 100)
    with pytest.raises(RnncliError, match="^the corpus holds only whitespace: nothing to learn$"):
        load_corpus([write(tmp_path, "w", " \n\t\r\n  ")], kind, 100, block=2)
    if kind != "byte":  # Unicode spaces, and a UTF-8 byte-order mark alone, as text
        with pytest.raises(RnncliError, match="only whitespace"):
            load_corpus([write(tmp_path, "u", "\u3000\u00a0\x1c\n")], kind, 100, block=2)
        with pytest.raises(RnncliError, match="is empty"):
            load_corpus([write(tmp_path, "bom", b"\xef\xbb\xbf")], kind, 100, block=2)


@pytest.mark.parametrize("kind", KINDS)
def test_byte_order_marks(tmp_path, kind):
    utf8 = [
        write(tmp_path, "a", b"\xef\xbb"),
        write(tmp_path, "b", b"\xbf" + TRICKY.encode() + b"\xef\xbb\xbfx"),
    ]
    # the first mark dropped, the second kept
    assert_same(load_corpus(utf8, kind, 100, block=2), utf8, kind, 100)
    utf16 = [write(tmp_path, "c", TRICKY.encode("utf-16")), write(tmp_path, "d", "more".encode("utf-16-le"))]
    assert_same(load_corpus(utf16, kind, 100, block=5), utf16, kind, 100)


def test_missing_files_are_named_before_anything_is_read(tmp_path):
    bad = write(tmp_path, "bad.txt", b"\xff")
    with pytest.raises(RnncliError, match="^no such file: nope.txt$"):
        load_corpus([bad, "nope.txt"], "char", 100)
    with pytest.raises(RnncliError, match="is a directory"):
        load_corpus([str(tmp_path)], "char", 100)


@pytest.mark.parametrize("kind", KINDS)
def test_a_cache_hit_reads_nothing_but_the_cache(tmp_path, cache_dir, monkeypatch, kind):
    path = write(tmp_path, "t.txt", TRICKY * 5)
    first = load_corpus([path], kind, 30)
    assert (
        not first.hit and len(list(cache_dir.glob("*.ids"))) == 1 and len(list(cache_dir.glob("*.json"))) == 1
    )
    assert not list(cache_dir.glob(".*"))  # no temp file left behind
    monkeypatch.setattr(corpus, "_build", lambda *a: pytest.fail("re-tokenized on a hit"))
    monkeypatch.setattr(corpus, "_Hash", lambda: pytest.fail("re-hashed on a hit"))
    again = load_corpus([path], kind, 30)
    assert again.hit and isinstance(again.ids, np.memmap)
    assert_same(again, [path], kind, 30)
    assert again.tokenizer.vocab == first.tokenizer.vocab and again.missing == first.missing


def test_settings_and_changes_make_new_entries(tmp_path, cache_dir):
    path = write(tmp_path, "t.txt", TRICKY)
    assert not load_corpus([path], "word", 30).hit
    assert not load_corpus([path], "word", 31).hit and not load_corpus([path], "char", 30).hit
    assert load_corpus([path], "word", 30).hit
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same bytes, a new entry
    assert not load_corpus([path], "word", 30).hit
    Path(path).write_text(TRICKY + "more words\n")  # changed
    got = load_corpus([path], "word", 30)
    assert not got.hit
    assert_same(got, [path], "word", 30)
    assert not load_corpus([path], "word", 30, cache=False).hit
    assert len(list(cache_dir.glob("*.ids"))) == 5


@pytest.mark.parametrize(
    "damage",
    [
        "truncate",
        "garbage json",
        "wrong json",
        "no ids",
        "garbage ids",
        "empty json",
        "folder ids",
        "folder json",
    ],
)
def test_a_damaged_entry_is_rebuilt_with_a_note(tmp_path, cache_dir, damage):
    path = write(tmp_path, "t.txt", TRICKY * 3)
    load_corpus([path], "char", 100)
    ids, meta = next(cache_dir.glob("*.ids")), next(cache_dir.glob("*.json"))
    if damage == "truncate":
        ids.write_bytes(ids.read_bytes()[:-1])
    elif damage == "garbage json":
        meta.write_bytes(b"\x00{not json")
    elif damage == "wrong json":
        meta.write_text(
            json.dumps({**json.loads(meta.read_text()), "tokenizer": {"kind": "char", "vocab": 3}})
        )
    elif damage == "garbage ids":  # the right size, so only the checksum can tell
        ids.write_bytes(bytes(255 - b for b in ids.read_bytes()))
    elif damage == "empty json":
        meta.write_bytes(b"")
    elif damage.startswith("folder"):
        victim = ids if damage == "folder ids" else meta
        victim.unlink()
        (victim / "x").mkdir(parents=True)
    else:
        ids.unlink()
    got = load_corpus([path], "char", 100)
    assert not got.hit
    assert "was damaged" in got.note and "tokenized again" in got.note
    assert_same(got, [path], "char", 100)
    assert load_corpus([path], "char", 100).hit


@pytest.mark.parametrize("kind", KINDS)
def test_standard_input_is_streamed_and_never_cached(tmp_path, cache_dir, monkeypatch, kind):
    path = write(tmp_path, "t.txt", "from a file; ")
    data = (TRICKY * 4).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    got = load_corpus([path, "-"], kind, 40, block=7)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert_same(got, [path, "-"], kind, 40)
    assert not got.hit and not list(cache_dir.glob("*"))


def test_corpus_tokens_are_data_tokenizer_tokens():
    """The streaming word split (\\w runs masked and split, every other character alone) is WORD_RE's."""
    from rnncli.data.text import WORD_RE

    text = "".join(chr(c) for c in range(0x3000)) + TRICKY
    path_ids = Tokenizer.build("word", text, 10**6).encode(text)[0]
    prov = streaming.Provisional()
    ids, used = prov.tokens(text.encode(), final=True)
    strings = [s.decode() if isinstance(s, bytes) else s for s in prov.strings]
    assert used == len(text.encode()) and len(ids) == len(path_ids)
    assert [strings[i] for i in ids] == WORD_RE.findall(text)


@pytest.mark.slow
def test_a_large_corpus_in_little_memory_then_from_the_cache(tmp_path):
    """~300 MB of text, tokenized in a child process: peak RSS < 600 MB (for word, with its worker
    processes, each counted at the largest's peak); the second run, a cache hit, reads under a
    tenth of the text's bytes (it checks the file's ends, never hashes it whole: the bytes, not a
    clock, show it). Run with: python -m pytest --run-slow tests/test_corpus.py"""
    from rnncli.data.word_split import workers_for

    path = tmp_path / "big.txt"
    unit = (Path(SAMPLES[0]).read_text() + TRICKY).encode()
    with open(path, "wb") as f:
        for i in range(300_000_000 // len(unit) + 1):
            f.write(unit.replace(b"the", b"teh") if i % 3 else unit)
    child = (
        "import json, resource, sys, time; from rnncli.data.corpus import load_corpus; "
        "t = time.perf_counter(); "
        "c = load_corpus([sys.argv[1]], sys.argv[2], 20000); s = time.perf_counter() - t; "
        "print(json.dumps({'hit': c.hit, 'n': len(c.ids), 'seconds': s, "
        "'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "
        "'workers_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "
        "'read': int(open('/proc/self/io').read().split('rchar:')[1].split()[0])}))"
    )
    for kind in KINDS:
        runs = [
            json.loads(
                subprocess.run(
                    [sys.executable, "-c", child, str(path), kind], check=True, capture_output=True, text=True
                ).stdout
            )
            for _ in range(2)
        ]
        assert not runs[0]["hit"] and runs[1]["hit"] and runs[0]["n"] == runs[1]["n"]
        workers = workers_for(path.stat().st_size) if kind == "word" else 0
        assert runs[0]["rss_mb"] + workers * runs[0]["workers_mb"] < 600, (kind, runs)
        assert runs[0]["read"] >= path.stat().st_size > 10 * runs[1]["read"], (kind, runs)


def test_training_maps_the_cached_ids_and_validates_on_a_bounded_share(tmp_path, monkeypatch):
    """The second run on a corpus reads its ids from the cache (building them would fail here), as a
    memory map; validation scores at most data.VAL_MAX_TOKENS held-out tokens."""
    from rnncli.data import text as data
    from rnncli.run.train import Trainer

    path = tmp_path / "c.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 400)
    settings = {"batch": 4, "seq": 8, "steps": 2, "out": str(tmp_path / "m.st")}
    with Trainer([str(path)], {"hidden": 8}, settings) as first:
        list(first.run())
    monkeypatch.setattr(corpus, "_build", lambda *a: pytest.fail("the cache was not used"))
    monkeypatch.setattr(data, "VAL_MAX_TOKENS", 100)
    with Trainer([str(path)], {"hidden": 8}, dict(settings, out=str(tmp_path / "n.st"))) as second:
        assert isinstance(second.streams.x.base, np.memmap) or isinstance(second.streams.x, np.memmap)
        assert second.val.B * second.val.length <= 100
        assert second.corpus == first.corpus  # the fingerprint comes back from the cache
        list(second.run())


@pytest.fixture
def split_words(monkeypatch):
    """Large files' word pass in worker processes (rnncli/data/word_split.py), here for small files too."""
    from rnncli.data import word_split

    monkeypatch.setattr(word_split, "workers_for", lambda size: 3)


def test_a_word_pass_split_among_processes_equals_one_pass(tmp_path, split_words):
    unit = Path(SAMPLES[0]).read_text() + TRICKY
    text = "".join(unit.replace("the", f"the{i % 7}") for i in range(4))
    for data in (text.encode(), b"\xef\xbb\xbf" + text.encode()):
        path = write(tmp_path, "w.txt", data)
        for max_vocab in (20000, 50):
            assert_same(load_corpus([path], "word", max_vocab, cache=False), [path], "word", max_vocab)
    given = Tokenizer.build("word", unit[: len(unit) // 3])
    assert_same(
        load_corpus([path], "word", 20000, tokenizer=given, cache=False), [path], "word", 20000, given
    )
    assert_same(load_corpus([path], "word", 20000), [path], "word")  # (through the cache)


def test_a_split_word_pass_names_the_first_bad_byte_of_the_whole_file(tmp_path, split_words):
    good = (TRICKY * 40).encode()
    for data in (
        good[:3000] + b"\xff" + good[3000:-5] + b"\xc0",
        b"\xef\xbb\xbf" + good + b"\xe2\x82",
        good[:-3000] + b"\xff",
    ):
        with pytest.raises(RnncliError) as want:
            decode_text(data, "the corpus", corpus.HINT)
        with pytest.raises(RnncliError) as got:
            load_corpus([write(tmp_path, "bad.txt", data)], "word", 100, cache=False)
        assert str(got.value) == str(want.value)


def test_split_points_follow_whitespace():
    from rnncli.data.word_split import cuts

    data = b"aaaa bbbb\ncccc" + b"d" * 30 + b" e"
    points = cuts(io.BytesIO(data), len(data), 4, 0)
    assert points[0] == 0 and points[-1] == len(data) and points == sorted(set(points))
    assert all(data[p - 1 : p] in (b" ", b"\n") for p in points[1:-1])
    assert cuts(io.BytesIO(b"x" * 100), 100, 3, 0) == [0, 100]  # no whitespace: one part


def test_a_resumed_run_finds_its_first_runs_ids_and_char_ignores_max_vocab(tmp_path, cache_dir):
    """The entry is keyed without the given vocabulary (it is compared with the entry's instead), and
    max_vocab keys word entries only; an edit that keeps size and mtime still misses (ctime)."""
    path = write(tmp_path, "t.txt", TRICKY * 3)
    fresh = load_corpus([path], "char", 100)
    assert load_corpus([path], "char", 100, tokenizer=fresh.tokenizer).hit  # a resume
    assert load_corpus([path], "char", 7).hit  # max_vocab means nothing to char
    other = Tokenizer.build("char", "abc")
    assert not load_corpus([path], "char", 100, tokenizer=other).hit  # another vocabulary: made again
    # a new run then builds its own vocabulary, not the other text's the entry now holds
    new = load_corpus([path], "char", 100)
    assert not new.hit and new.tokenizer.vocab == fresh.tokenizer.vocab and not new.missing
    assert load_corpus([path], "char", 100).hit
    st = os.stat(path)
    data = bytearray(Path(path).read_bytes())
    data[len(data) // 2] ^= 1  # same size, mtime put back
    Path(path).write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert not load_corpus([path], "char", 100).hit


def test_a_cache_folder_that_cannot_be_written_falls_back_to_a_temp_file(tmp_path, cache_dir, monkeypatch):
    import errno
    import tempfile

    path = write(tmp_path, "t.txt", TRICKY * 3)
    real = tempfile.mkstemp

    def full(*args, dir=None, **kw):
        if dir is not None and str(cache_dir) in str(dir):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", full)
    for kind in KINDS:
        got = load_corpus([path], kind, 100)
        assert not got.hit and "could not be written (No space left on device)" in got.note
        assert_same(got, [path], kind, 100)
