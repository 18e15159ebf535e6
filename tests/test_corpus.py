"""The streaming tokenizer (rnncli/data/corpus.py, rnncli/data/streaming.py, rnncli/data/word_split.py)
against the in-memory path it replaces (Tokenizer.build + encode over read_bytes, hashlib); its
token cache is tests/test_token_cache.py's."""

import io
from pathlib import Path

import numpy as np
import pytest

from rnncli.base.errors import RnncliError
from rnncli.data import corpus, streaming
from rnncli.data.corpus import load_corpus
from rnncli.data.text import Tokenizer, decode_text
from tests.corpus_cases import KINDS, SAMPLES, TRICKY, assert_same, fresh_cache, write


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    return fresh_cache(tmp_path, monkeypatch)


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
