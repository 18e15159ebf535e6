"""The token cache (rnncli/data/corpus.py): a hit reads nothing but the cache, settings and changes
make new entries, damage is rebuilt with a note, standard input is never cached, training maps the
cached ids, and a cache that cannot be written falls back to a temp file.
The slow test: python -m pytest --run-slow tests/test_token_cache.py"""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnncli.data import corpus
from rnncli.data.corpus import load_corpus
from rnncli.data.text import Tokenizer
from tests.corpus_cases import KINDS, SAMPLES, TRICKY, assert_same, fresh_cache, write


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    return fresh_cache(tmp_path, monkeypatch)


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


@pytest.mark.slow
def test_a_large_corpus_in_little_memory_then_from_the_cache(tmp_path):
    """~300 MB of text, tokenized in a child process: peak RSS < 600 MB (for word, with its worker
    processes, each counted at the largest's peak); the second run, a cache hit, reads under a
    tenth of the text's bytes (it checks the file's ends, never hashes it whole: the bytes, not a
    clock, show it). Run with: python -m pytest --run-slow tests/test_token_cache.py"""
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
