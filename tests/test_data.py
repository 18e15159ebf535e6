"""Tokenizers, corpus reading and the stream layout."""

import numpy as np
import pytest

from rnncli.base.errors import RnncliError
from rnncli.data.text import Streams, Tokenizer, count_chars, read_bytes, split_val

TEXT = "Hello, wörld! 你好\nHello again.\n"


def test_char_round_trip_and_compact_ids():
    tok = Tokenizer.build("char", TEXT.encode())
    ids, missing = tok.encode(TEXT)
    assert missing == [] and ids.dtype == np.uint8
    assert tok.decoder()(ids) == TEXT
    assert tok.vocab == sorted(set(TEXT))


def test_char_drops_and_names_unknown_characters():
    tok = Tokenizer.build("char", b"abc")
    ids, missing = tok.encode("abxcz")
    assert tok.decoder()(ids) == "abc" and missing == ["x", "z"]


def test_byte_handles_any_bytes_and_streams_split_characters():
    data = bytes(range(256)) + "é".encode()
    tok = Tokenizer.build("byte", data)
    ids, _ = tok.encode(data)
    assert len(tok) == 256 and bytes(ids) == data
    decode = tok.decoder()
    e_acute = "é".encode()
    assert decode([e_acute[0]]) == "" and decode([e_acute[1]]) == "é"


def test_word_keeps_whitespace_and_maps_rare_words_to_unk():
    text = "the cat sat on the mat. the end\n"
    tok = Tokenizer.build("word", text.encode(), max_vocab=6)
    ids, missing = tok.encode(text)
    assert tok.vocab[0] == "<unk>" and len(tok) == 6
    assert "the" in tok.vocab and " " in tok.vocab
    assert set(missing) and all(m not in tok.vocab for m in missing)
    full = Tokenizer.build("word", text.encode())
    assert full.decoder()(full.encode(text)[0]) == text


def test_non_utf8_in_char_mode_names_the_offset(tmp_path):
    """(The advice, --tokenizer byte, is the trainer's to give: see test_cli's BINARY case.)"""
    with pytest.raises(RnncliError, match="not UTF-8 text .bad byte at offset 3"):
        Tokenizer.build("char", b"ok \xff\xfe bad")


def test_read_bytes_errors_are_one_sentence(tmp_path):
    with pytest.raises(RnncliError, match="no such file"):
        read_bytes([str(tmp_path / "missing.txt")])
    with pytest.raises(RnncliError, match="directory"):
        read_bytes([str(tmp_path)])
    (tmp_path / "a").write_bytes(b"ab")
    (tmp_path / "b").write_bytes(b"cd")
    assert read_bytes([str(tmp_path / "a"), str(tmp_path / "b")]) == b"abcd"


def test_count_chars():
    assert count_chars("héllo") == 5 and count_chars("héllo".encode()) == 5


def test_streams_are_contiguous_and_targets_are_next_tokens():
    ids = np.arange(103, dtype=np.uint16)
    s = Streams(ids, batch=4, seq=5)
    assert s.length == 25 and s.n_windows == 5
    x, y = s.window(1)
    assert x.shape == (5, 4) and x.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], [5, 6, 7, 8, 9])  # stream 0, tokens 5..9
    np.testing.assert_array_equal(x[:, 2], [55, 56, 57, 58, 59])  # stream 2 starts at 50
    np.testing.assert_array_equal(y, x + 1)
    windows = list(s.all_windows())
    assert sum(w[0].size for w in windows) == 100


def test_split_val_holds_out_the_end():
    train, val = split_val(np.arange(100), 0.05)
    assert len(val) == 5 and val[0] == 95 and len(train) == 95
    assert len(split_val(np.arange(100), 0.0)[1]) == 0


def test_a_byte_sequence_cut_short_shows_at_the_end():
    dec = Tokenizer.build("byte", b"").decoder()
    assert dec([0x61, 0xC3]) == "a" and dec([], final=True) == "\ufffd"
