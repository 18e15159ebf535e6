"""Property: whatever is done to a real checkpoint (bytes of its header or data, JSON values of its
metadata with checksums recomputed, tensor shapes and offsets), every command that reads it ends
in success or in one clear line; never a traceback, a crash or a hang.

CI runs a fixed, derandomized set of examples; RNNCLI_FUZZ_EXAMPLES=2000 runs more."""

import copy
import faulthandler
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnncli.run.train import Trainer
from tests.hostile import assert_clean, put_together, run_cli, take_apart

TEXT = b"Monday: rain at first, then sun. Tuesday: wind from the west, cooler.\n" * 40
EXAMPLES = int(os.environ.get("RNNCLI_FUZZ_EXAMPLES", "120"))
DELETE = object()


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Two real checkpoints: a char LSTM and a word GRU, both resumable."""
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "corpus.txt").write_bytes(TEXT)
    out = {}
    for name, model, tokenizer in [
        ("char", dict(cell="lstm"), "char"),
        ("word", dict(cell="gru", layers=1), "word"),
    ]:
        path = folder / f"{name}.safetensors"
        with Trainer(
            [str(folder / "corpus.txt")],
            dict(model, hidden=8, embed=4),
            dict(batch=3, seq=6, steps=3, eval_every=2, tokenizer=tokenizer, out=str(path)),
        ) as t:
            list(t.run())
        out[name] = (path, path.read_bytes(), take_apart(path))
    return Bases(folder, out)


class Bases(tuple):
    """(folder, {name: (path, bytes, parts)}), with a short repr for hypothesis's reports."""

    def __new__(cls, folder, files):
        return super().__new__(cls, (folder, files))

    def __repr__(self):
        return f"Bases({self[0]})"


def leaf_paths(value, prefix=()):
    """Paths to the values inside decoded metadata (long lists: their first few items)."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = list(enumerate(value))[:4]
    else:
        return [prefix]
    paths = [prefix]
    for key, v in items:
        paths += leaf_paths(v, prefix + (key,))
    return paths


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 300)
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=4)
    | st.just(DELETE),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=4,
)

mutations = st.one_of(
    st.tuples(
        st.just("bytes"),
        st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=3),
    ),
    st.tuples(st.just("cut"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("meta"), st.integers(0, 10**6), json_values),
    st.tuples(
        st.just("table"),
        st.integers(0, 10**6),
        st.sampled_from(["dtype", "shape", "data_offsets"]),
        json_values,
    ),
)


def _set(root, path, value):
    *parents, last = path
    for key in parents:
        root = root[key]
    if value is DELETE:
        del root[last]
    else:
        root[last] = value


def mutate(blob: bytes, parts, mutation) -> tuple[bytes | None, tuple]:
    kind = mutation[0]
    if kind == "bytes":
        data = bytearray(blob)
        for where, value in mutation[1]:
            data[int(where * len(data))] = value
        return bytes(data), ()
    if kind == "cut":
        return blob[: int(mutation[1] * len(blob))], ()
    table, meta, data = copy.deepcopy(parts)
    if kind == "meta":
        paths = [p for p in leaf_paths(meta) if p and p[0] != "checksums"]
        _set(meta, paths[mutation[1] % len(paths)], mutation[2])
    else:
        name = sorted(table)[mutation[1] % len(table)]
        _set(table, (name, mutation[2]), mutation[3])
    return None, (table, meta, data)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(which=st.sampled_from(["char", "word"]), mutation=mutations)
def test_mutated_checkpoints_end_in_success_or_one_line(bases, which, mutation):
    folder, base = bases
    path, blob, parts = base[which]
    bad = folder / "mutated.safetensors"
    raw, rebuilt = mutate(blob, parts, mutation)
    try:
        put_together(bad, *rebuilt) if rebuilt else bad.write_bytes(raw)
    except (TypeError, ValueError):  # json cannot write this value (say, a NaN key): nothing to read
        return
    faulthandler.dump_traceback_later(120, exit=True)  # a hang fails the run loudly
    try:
        for argv in (
            ["inspect", str(bad)],
            ["inspect", str(bad), "--json"],
            ["generate", "-m", str(bad), "-n", "8", "--rng-seed", "3"],
            ["eval", "-m", str(bad), "-"],
            [
                "train",
                "-",
                "--resume",
                str(bad),
                "--steps",
                "5",
                "--out",
                str(folder / "resumed.safetensors"),
            ],
        ):
            code, _, err = run_cli(*argv, stdin=TEXT)
            assert_clean(code, err)
    finally:
        faulthandler.cancel_dump_traceback_later()


# The command line: every command with one option given a generated value (numbers of any size,
# NaN, paths, text with NUL, very long text, bytes that are not UTF-8, as Python keeps them from argv).
# Paths are relative to a scratch folder (the test's working directory): a run that succeeds writes there.
CLI_EXAMPLES = int(os.environ.get("RNNCLI_FUZZ_EXAMPLES", "40"))
not_utf8 = st.binary(min_size=1, max_size=8).map(lambda b: b.decode("utf-8", "surrogateescape"))
texts = (
    st.text(max_size=12)
    | st.just("a\0b")
    | st.text(min_size=3000, max_size=3000)
    | not_utf8
    | st.sampled_from(["", "-", "0", "1:2", "0:0", "nan", "-inf", "1e400", "lstm", "word", "auto"])
)
numbers = (
    (st.integers(-3, 40) | st.sampled_from([2**31, 2**63, 10**30])).map(str)
    | st.floats(allow_nan=True).map(repr)
    | st.sampled_from(["1e-300", "0x10", "1_0", " 3", "٣"])
)
paths = (
    st.sampled_from(
        [
            ".",
            "",
            "-",
            "dir",
            "dir/",
            "nope/x",
            "corpus.txt",
            "m.safetensors",
            "a\0b",
            "x" * 5000,
            "/proc/rnncli",  # (not a FIFO: reading one waits for a writer, as cat does)
        ]
    )
    | st.text(max_size=12).map(lambda t: "f" + t.replace("/", "_"))
    | not_utf8.map(lambda t: "f" + t.replace("/", "_"))
)
KINDS = {"n": numbers, "t": texts, "p": paths}
STOPS = ["--steps", "1", "--time", "1"]
COMMANDS = {  # command: (cheap argv that succeeds, {option: kind of value})
    "train": (
        [
            "train",
            "corpus.txt",
            "--recipe",
            "plain",
            "--hidden",
            "8",
            "--embed",
            "4",
            "--batch",
            "2",
            "--seq",
            "4",
            "--eval-every",
            "1",
            "--out",
            "out.safetensors",
            *STOPS,
        ],
        dict.fromkeys(
            [
                "--hidden",
                "--layers",
                "--embed",
                "--dropout",
                "--batch",
                "--seq",
                "--lr",
                "--lr-min-frac",
                "--warmup",
                "--clip",
                "--steps",
                "--epochs",
                "--time",
                "--val-frac",
                "--eval-every",
                "--patience",
                "--max-vocab",
                "--rng-seed",
                "--threads",
            ],
            "n",
        )
        | dict.fromkeys(["--cell", "--lr-schedule", "--tokenizer", "--device", "--recipe"], "t")
        | dict.fromkeys(["--out", "--resume", "corpus"], "p"),
    ),
    "generate": (
        ["generate", "-m", "m.safetensors", "-n", "4", "--max-time", "1"],
        dict.fromkeys(
            [
                "-n",
                "-t",
                "--top-k",
                "--top-p",
                "--min-p",
                "--repeat-penalty",
                "--repeat-last-n",
                "--rng-seed",
                "--max-time",
                "-N",
            ],
            "n",
        )
        | dict.fromkeys(["--seed", "--stop", "--device"], "t")
        | dict.fromkeys(["-m", "--prompts"], "p"),
    ),
    "eval": (
        ["eval", "-m", "m.safetensors", "corpus.txt"],
        {"--threads": "n", "--device": "t", "-m": "p", "text": "p"},
    ),
    "inspect": (
        ["inspect", "m.safetensors", "--text", "corpus.txt"],
        dict.fromkeys(["--top", "--threshold", "--page-mb", "--threads"], "n")
        | dict.fromkeys(["--neuron", "--match", "--state", "--device"], "t")
        | dict.fromkeys(["model", "--text", "--html"], "p"),
    ),
    "bench": (["bench", "--repeats", "0"], {"-c": "t", "--measure": "t", "--repeats": "n", "--threads": "n"}),
}
CHOICES = [(command, option) for command, (_, options) in COMMANDS.items() for option in options]


def _with(command: str, option: str, value: str) -> list[str]:
    argv = list(COMMANDS[command][0])
    if option in ("corpus", "model"):  # the first argument
        argv[1] = value
    elif option == "text":  # eval's
        argv[-1] = value
    elif option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    return argv


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-fuzz")
    (folder / "corpus.txt").write_bytes(TEXT)
    (folder / "dir").mkdir()
    os.mkfifo(folder / "fifo")
    with Trainer(
        [str(folder / "corpus.txt")],
        dict(hidden=8, embed=4),
        dict(batch=2, seq=4, steps=2, eval_every=1, out=str(folder / "m.safetensors")),
    ) as t:
        list(t.run())
    return folder


@settings(
    max_examples=CLI_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(choice=st.sampled_from(CHOICES), data=st.data())
def test_the_command_line_ends_in_success_or_one_line(scratch, monkeypatch, choice, data):
    command, option = choice
    value = data.draw(KINDS[COMMANDS[command][1][option]], label="value")
    monkeypatch.chdir(scratch)
    monkeypatch.delenv("RNNCLI_MODEL", raising=False)
    faulthandler.dump_traceback_later(120, exit=True)
    try:
        code, _, err = run_cli(*_with(command, option, value), stdin=TEXT)
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert code in (0, 1, 2) and "Traceback" not in err, (code, err)
    lines = err.strip().splitlines()
    if code:  # one error line, last; before it only what a run that got under way says (training diverged)
        assert lines[-1].startswith("rnncli: error: ") and sum("error" in line for line in lines) == 1, err
        assert all(line.startswith(("rnncli: ", "step ")) for line in lines), err
    assert os.path.isdir(scratch / "dir") and (scratch / "fifo").is_fifo()


@pytest.mark.parametrize(
    "env",
    [
        {b"RNNCLI_MODEL": b"m\xff\xfe.safetensors"},
        {b"RNNCLI_MODEL": b"x" * 5000},
        {b"RNNCLI_MODEL": b"dir"},
        {b"RNNCLI_CACHE_DIR": b"/proc/rnncli\xff"},
        {b"RNNCLI_CACHE_DIR": b"fifo"},
    ],
)
def test_environment_variables_that_are_not_utf8_or_not_paths(scratch, env):
    """In a real process (the environment arrives as bytes): success or one line. (`inspect` alone, which
    compiles nothing: a cache folder that cannot be used when kernels compile is test_caches's.)"""
    base = {k.encode(): v.encode() for k, v in os.environ.items() if not k.startswith("RNNCLI_")}
    argv = ["inspect"] if b"RNNCLI_MODEL" in env else ["inspect", "m.safetensors"]
    p = subprocess.run(
        [sys.executable, "-m", "rnncli", *argv],
        env={**base, **env},
        cwd=scratch,
        capture_output=True,
        timeout=600,
    )
    err = p.stderr.decode(errors="replace")
    assert_clean(p.returncode, err)
