"""Hostile and damaged checkpoints: every command that reads one ends in one clear line, exit 1,
before any kernel sees it; ids outside the vocabulary never reach compiled code."""

import json
import subprocess
import sys

import numpy as np
import pytest

from rnncli.base.errors import RnncliError
from rnncli.run.train import Trainer
from rnncli.store import checkpoint
from rnncli.store.load import load_model
from tests.hostile import assert_clean, edited, run_cli, take_apart

SMALL = dict(hidden=12, embed=6, layers=2)
TEXT = b"Monday: rain at first, then sun. Tuesday: wind from the west, cooler.\n" * 40


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A real checkpoint with every kind of tensor: best weights, latest weights, optimizer, state."""
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "corpus.txt").write_bytes(TEXT)
    out = folder / "base.safetensors"
    with Trainer(
        [str(folder / "corpus.txt")],
        dict(SMALL, cell="lstm"),
        dict(batch=4, seq=8, steps=4, eval_every=2, out=str(out)),
    ) as t:
        list(t.run())
    return out


def _vocab_plus(n, resize=False):
    def edit(table, meta, data):
        vocab = meta["tokenizer"]["vocab"]
        meta["tokenizer"]["vocab"] = vocab[:n] if n < 0 else vocab + [chr(0x4E00 + i) for i in range(n)]
        if resize:
            meta["model"]["vocab_size"] += n
        return data

    return edit


def _set(part, *path_and_value):
    """Set meta[path] or table[path] (part: "meta" or "table") to a value."""
    *path, value = path_and_value

    def edit(table, meta, data):
        node = meta if part == "meta" else table
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return data

    return edit


def _bytes_of(tensor, value):
    def edit(table, meta, data):
        begin = table[tensor]["data_offsets"][0]
        return data[:begin] + np.float32(value).tobytes() + data[begin + 4 :]

    return edit


def _flip(tensor):
    def edit(table, meta, data):
        begin, end = table[tensor]["data_offsets"]
        at = (begin + end) // 2
        return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]

    return edit


def _drop_tensor(tensor):
    def edit(table, meta, data):
        begin, end = table.pop(tensor)["data_offsets"]
        for entry in table.values():
            if entry["data_offsets"][0] >= end:
                entry["data_offsets"] = [o - (end - begin) for o in entry["data_offsets"]]
        return data[:begin] + data[end:]

    return edit


CASES = [
    # (edit, checksums recomputed, what the one line says, whether inspect (header only) catches it)
    (_vocab_plus(3), True, "the vocabulary has", True),
    (_vocab_plus(3, resize=True), True, "embedding.weight has shape", True),
    (_vocab_plus(-3, resize=False), True, "the vocabulary has", True),
    (_set("meta", "model", "hidden", "12"), True, "the setting hidden is '12', not a whole number", True),
    (_set("meta", "model", "layers", 0), True, "--layers must be at least 1", True),
    (_set("meta", "model", "cell", "transformer"), True, "unknown cell", True),
    (_set("meta", "train", "seq", 2.5), True, "the setting seq is 2.5", True),
    (_set("meta", "tokenizer", "kind", "bpe"), True, "unknown tokenizer", True),
    (_set("meta", "tokenizer", "vocab", 3, "ab"), True, "not one character", True),
    (_set("meta", "tokenizer", "vocab", 3, "\n"), True, "repeats an entry", True),
    (_set("meta", "progress", "step", -1), True, "progress.step is negative", True),
    (_set("meta", "curve", "points", [[3, "x"]]), True, "the setting curve is 'x'", True),
    (_set("meta", "curve", "stride", 0), True, "curve.stride is below 1", True),
    (_set("meta", "curve", "pending", [1.0]), True, "its loss curve is malformed", True),
    (_set("meta", "recipe", [1]), True, "its recipe record is malformed", True),
    (_bytes_of("head.bias", np.nan), True, "NaN or infinite", False),
    (_bytes_of("rnn.weight_hh_l1", np.inf), True, "NaN or infinite", False),
    (_flip("rnn.weight_ih_l0"), False, "does not match its checksum", False),
    (_set("meta", "model", "hidden", 13), False, "the header does not match its checksum", True),
    (_set("table", "head.bias", "dtype", "F16"), True, "is malformed", True),
    (_set("table", "head.bias", "dtype", "I32"), True, "is I32, not F32", True),
    (_set("table", "head.bias", "shape", [3, 2]), True, "offsets", True),
    (_set("table", "head.bias", "data_offsets", [0, 4]), True, "offsets", True),
    (_drop_tensor("rnn.bias_hh_l1"), True, "tensor rnn.bias_hh_l1 is missing", True),
    (
        _drop_tensor("optimizer.exp_avg.head.bias"),
        True,
        "tensor optimizer.exp_avg.head.bias is missing",
        True,
    ),
    (_drop_tensor("state.c"), True, "tensor state.c is missing", True),
    (_set("meta", "checksums", "header", "00000000"), False, "the header does not match its checksum", True),
    (_set("meta", "tokenizer", "vocab", 3, "\ud800"), True, "lone surrogate", True),
    (_set("meta", "progress", "step", 10**400), True, "below 2**53", True),
    (
        _set("meta", "tokenizer", "kind", "word"),
        True,
        "its tokenizer is word but its settings say char",
        True,
    ),
    (_set("table", "head.bias", "shape", [1] * 100_000), True, "is malformed", True),
    (_set("meta", "format_version", "\u00b2"), True, "unknown format version", True),
    (_set("meta", "format_version", "9" * 5000), True, "unknown format version", True),
]


@pytest.mark.parametrize("edit,reseal,message,by_header", CASES, ids=[c[2][:28] for c in CASES])
def test_every_command_refuses_a_bad_checkpoint_in_one_line(base, tmp_path, edit, reseal, message, by_header):
    bad = edited(base, tmp_path / "bad.safetensors", edit, reseal)
    commands = [
        ["generate", "-m", str(bad), "-n", "5"],
        ["eval", "-m", str(bad), "-"],
        ["train", "-", "--resume", str(bad), "--out", str(tmp_path / "r.safetensors")],
    ]
    if by_header:
        commands.append(["inspect", str(bad)])
    for argv in commands:
        code, out, err = run_cli(*argv, stdin=TEXT)
        assert_clean(code, err, allowed=(1,))
        assert message in err and str(bad) in err, (argv, err)
        assert out == ""


def test_resume_checks_the_training_state_too(base, tmp_path):
    """generate and eval read only the model's tensors; --resume also reads Adam's and the state."""
    for edit, message in [
        (_bytes_of("optimizer.exp_avg_sq.head.bias", -1.0), "negative second moments"),
        (_flip("optimizer.exp_avg.rnn.weight_hh_l0"), "does not match its checksum"),
        (_bytes_of("state.c", np.nan), "NaN or infinite"),
        (
            _set("meta", "rng", {"bit_generator": "PCG64", "state": {"state": -1, "inc": 1}}),
            "random generator",
        ),
    ]:
        bad = edited(base, tmp_path / "bad.safetensors", edit, reseal="checksum" not in message)
        assert run_cli("generate", "-m", str(bad), "-n", "3")[0] == 0
        code, _, err = run_cli(
            "train", "-", "--resume", str(bad), "--out", str(tmp_path / "r.safetensors"), stdin=TEXT
        )
        assert_clean(code, err, allowed=(1,))
        assert message in err


def test_a_truncated_or_padded_file_is_named(base, tmp_path):
    blob = base.read_bytes()
    for name, data in [("cut", blob[:-3]), ("long", blob + b"\0" * 8), ("header", blob[:100])]:
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        code, _, err = run_cli("generate", "-m", str(path), "-n", "3")
        assert_clean(code, err, allowed=(1,))
        assert "truncated or padded" in err or "not a safetensors" in err


def test_a_newer_format_asks_for_an_upgrade(base, tmp_path):
    bad = edited(base, tmp_path / "new.safetensors", _set("meta", "format_version", 9))
    code, _, err = run_cli("inspect", str(bad))
    assert code == 1 and "newer rnncli" in err


def test_resume_writes_to_its_own_file_never_to_a_path_stored_inside(base, tmp_path):
    """A checkpoint's stored `out` is where its run wrote; a downloaded file must not choose where
    this machine writes."""
    elsewhere = tmp_path / "victim.txt"
    hostile = edited(base, tmp_path / "h.safetensors", _set("meta", "train", "out", str(elsewhere)))
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(TEXT)
    code, _, err = run_cli("train", str(corpus), "--resume", str(hostile), "--steps", "5")
    assert_clean(code, err, allowed=(0,))
    assert not elsewhere.exists()
    assert json.loads(run_cli("inspect", str(hostile), "--json")[1])["progress"]["step"] == 5


def test_weights_only_and_version_1_checkpoints_still_load(base, tmp_path):
    table, meta, data = take_apart(base)
    model = {k: v for k, v in table.items() if not k.startswith(checkpoint.TRAINING_PREFIXES)}
    with checkpoint.Reader(base) as reader:
        arrays = reader.tensors(list(model))
    slim = tmp_path / "slim.safetensors"
    checkpoint.save(slim, arrays, {k: meta[k] for k in ("model", "train", "tokenizer")})
    code, out, err = run_cli("generate", "-m", str(slim), "-n", "10", "--rng-seed", "1")
    assert code == 0 and len(out) == 10, err
    code, _, err = run_cli("train", "-", "--resume", str(slim), stdin=TEXT)
    assert code == 1 and "cannot be resumed" in err
    old = edited(base, tmp_path / "v1.safetensors", _set("meta", "format_version", 1), reseal=False)
    assert run_cli("generate", "-m", str(old), "-n", "3")[0] == 0


def test_kernels_never_receive_an_id_outside_the_vocabulary(base):
    from rnncli.model.config import SampleConfig
    from rnncli.run.sample import Decoder

    model, tok, _ = load_model(str(base))
    V = model.cfg.vocab_size
    h, c = model.zero_state(2)
    for bad in (V, -1, 10**6):
        ids = np.zeros((3, 2), np.int64)
        ids[1, 1] = bad
        with pytest.raises(RnncliError, match="outside the vocabulary"):
            model.loss(ids, np.zeros_like(ids), h, c)
        with pytest.raises(RnncliError, match="outside the vocabulary"):
            model.loss(np.zeros_like(ids), ids, h, c)
        with pytest.raises(RnncliError, match="outside the vocabulary"):
            Decoder(model, SampleConfig()).prime([np.array([0, bad])])


def test_the_real_command_line_says_one_line(base, tmp_path):
    bad = edited(base, tmp_path / "bad.safetensors", _vocab_plus(5))
    r = subprocess.run(
        [sys.executable, "-m", "rnncli", "generate", "-m", str(bad)], capture_output=True, timeout=120
    )
    assert r.returncode == 1 and r.stdout == b""
    assert r.stderr.decode().count("\n") == 1 and "vocabulary has" in r.stderr.decode()
