"""Every kind of corpus a user may hand over has a defined outcome: trained on, or one clear line."""

import codecs
import json
import os
import subprocess
import sys
import threading

import pytest

from rnncli.store import validate
from tests.hostile import assert_clean, run_cli

TINY = ["--hidden", "8", "--embed", "4", "--batch", "4", "--seq", "8", "--steps", "2"]
PROSE = "The river rose in the night; by morning the stone bridge was gone.\n" * 30


def train(tmp_path, data: bytes | None, *flags, source=None):
    """(exit status, stderr, checkpoint path) of a short run on `data` (or on `source`)."""
    corpus = tmp_path / "corpus.txt"
    if data is not None:
        corpus.write_bytes(data)
    out = tmp_path / "m.safetensors"
    code, _, err = run_cli("train", str(source or corpus), *TINY, *flags, "--out", str(out))
    return code, err, out


def vocab_of(path):
    return validate.read(str(path)).tokenizer.get("vocab")


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "the corpus is empty"),
        (b" \n\t \r\n   \n", "only whitespace"),
        (b"a", "too short"),
        (b"just a few words\n", "too short"),
        (bytes(range(256)) * 40, "is not UTF-8 text (bad byte at offset 128); use --tokenizer byte"),
        (PROSE.encode()[:500] + b"\xc3\x28" + PROSE.encode(), "bad byte at offset 500"),
        (codecs.BOM_UTF16_LE + b"a\x00" * 3 + b"\x00\xd8", "is not UTF-16 text"),
    ],
)
def test_corpora_that_cannot_be_learned_are_explained(tmp_path, data, message):
    code, err, out = train(tmp_path, data)
    assert_clean(code, err, allowed=(1,))
    assert message in err and not out.exists()


def test_binary_data_trains_with_the_byte_tokenizer(tmp_path):
    code, err, out = train(tmp_path, bytes(range(256)) * 40, "--tokenizer", "byte")
    assert code == 0, err
    assert validate.read(str(out)).model.vocab_size == 256


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_a_byte_order_mark_is_read_and_dropped(tmp_path, encoding):
    data = PROSE.encode(encoding)
    if encoding == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data
    code, err, out = train(tmp_path, data)
    assert code == 0, err
    assert "".join(vocab_of(out)) == "".join(sorted(set(PROSE)))  # no mark, no NULs
    (tmp_path / "plain.txt").write_text(PROSE)
    scores = [
        json.loads(run_cli("eval", "-m", str(out), str(p), "--json")[1])
        for p in (tmp_path / "corpus.txt", tmp_path / "plain.txt")
    ]
    assert scores[0] == scores[1]  # the same text, whatever its encoding


def test_crlf_line_ends_are_kept_as_characters(tmp_path):
    code, err, out = train(tmp_path, PROSE.replace("\n", "\r\n").encode())
    assert code == 0, err
    assert "\r" in vocab_of(out) and "\n" in vocab_of(out)


def test_nul_characters_are_kept_as_characters(tmp_path):
    code, err, out = train(tmp_path, PROSE.replace(";", "\x00").encode())
    assert code == 0, err
    assert "\x00" in vocab_of(out)
    code, text, err = run_cli("generate", "-m", str(out), "-n", "50", "--rng-seed", "1", "--no-echo")
    assert code == 0 and len(text) == 50


def test_one_50_megabyte_line(tmp_path):
    line = ("abcdefghij klmnopqrst " * 2_400_000)[:50_000_000]
    code, err, out = train(tmp_path, line.encode(), "--val-frac", "0.001")
    assert code == 0, err
    assert len(vocab_of(out)) == 21


def test_a_hundred_thousand_distinct_characters(tmp_path):
    chars = [chr(0x10000 + i) for i in range(100_000)]
    code, err, out = train(tmp_path, ("".join(chars) * 2).encode(), "--val-frac", "0.01")
    assert code == 0, err
    assert json.loads(run_cli("inspect", str(out), "--json")[1])["vocab_size"] == 100_000
    code, text, err = run_cli("generate", "-m", str(out), "-n", "20", "--rng-seed", "1", "--no-echo")
    assert code == 0 and len(text) == 20 and set(text) <= set(chars)


def test_a_directory_is_refused(tmp_path):
    code, err, _ = train(tmp_path, None, source=tmp_path)
    assert_clean(code, err, allowed=(1,))
    assert "is a directory" in err


def test_an_unreadable_file_is_named(tmp_path):
    code, err, _ = train(tmp_path, None, source="/proc/self/mem")  # open succeeds, read fails, even for root
    assert_clean(code, err, allowed=(1,))
    assert "cannot read /proc/self/mem" in err
    if os.geteuid() != 0:
        locked = tmp_path / "locked.txt"
        locked.write_text(PROSE)
        locked.chmod(0)
        code, err, _ = train(tmp_path, None, source=locked)
        assert code == 1 and "Permission denied" in err


def test_a_fifo_is_read_as_a_stream(tmp_path):
    fifo = tmp_path / "corpus.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(PROSE))
    writer.start()
    code, err, out = train(tmp_path, None, source=fifo)
    writer.join(timeout=30)
    assert code == 0, err
    assert "".join(vocab_of(out)) == "".join(sorted(set(PROSE)))


def test_stdin_is_read_when_named_and_a_terminal_is_not_waited_on(tmp_path):
    out = tmp_path / "m.safetensors"
    code, _, err = run_cli("train", "-", *TINY, "--out", str(out), stdin=PROSE.encode())
    assert code == 0, err
    import pty

    leader, follower = pty.openpty()  # eval with no file, at a terminal: say so instead of waiting
    r = subprocess.run(
        [sys.executable, "-m", "rnncli", "eval", "-m", str(out)],
        stdin=follower,
        capture_output=True,
        timeout=60,
    )
    os.close(leader)
    os.close(follower)
    assert r.returncode == 1 and b"no text to score" in r.stderr


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "fewer than two tokens"),
        (b"\xc3\x28 not text", "not UTF-8"),
    ],
)
def test_text_that_cannot_be_scored_is_explained(tmp_path, data, message):
    code, err, out = train(tmp_path, PROSE.encode())
    assert code == 0, err
    code, _, err = run_cli("eval", "-m", str(out), "-", stdin=data)
    assert_clean(code, err, allowed=(1,))
    assert message in err
