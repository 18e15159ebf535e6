"""Golden outputs: what every command prints on stdout, and the one error line of the README's "When
things go wrong" cases, compared byte for byte with what the tree printed before issue 22's
refactor, so that moving the code (and putting the CLI over the Python API) cannot change the data.

The CLI runs only as a subprocess (`python -m rnncli`), never through its modules, whose paths
are what changes; the commands run in a scratch folder with relative file names, so no temporary
path reaches a recording. The models are the three small checkpoints in tests/fixtures/golden/
(make_models.py there rebuilds them: a char GRU, a word LSTM and a byte RNN); recordings are in
tests/fixtures/golden/out/ (one file of stdout per command) and errors.jsonl (exit status and
stderr per case).

A deliberate change of output is one command, and shows in the diff of the recordings:

    RNNCLI_GOLDEN_RECORD=1 python -m pytest -q tests/test_golden.py

What is not compared byte for byte, and why (each normaliser below says it again):
- speeds and times (`tokens_per_s`, `elapsed_s`, generation's `stats` timings, the recipe's
  measured tokens/s and predicted seconds, a first run's `compile_s`): the clock's, not rnncli's;
- `train --plan` is run with --steps, under which the recipe's choice does not depend on the
  measured speed (only the tokens/s and seconds it prints do); with --time it sizes everything from
  this machine's speed, so that form is left out;
- a checkpoint's age in train's refusal ("saved 3 minutes ago"), and the memory the machine has
  free in the out-of-memory refusal;
- inspect --html's page is kept as a digest (it is tens of kB), taken with the module paths its
  comments name (rnncli/page.py, moved by the refactor) left out;
- an error case is its exit status and the last line of stderr (notes may come before it).
Numbers depend on the thread count (eval --json and train's losses differ in their last digits
between --threads 1 and 2; generation does not), so every command that takes --threads is given
2, and every one that takes --device is given cpu (a GPU, where there is one, would be chosen).
The products of these narrow models are all below the size that tuning measures (tune.SMALL), so
they take the fixed rule's path; --no-tune is given anyway where it is an option. The recordings
are this machine's (its BLAS and vector width decide the last bits, cpu.txt names it); on another
CPU the stdout recordings are compared with their decimal numbers to 1e-4 and the digests are skipped.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.golden_cases import (
    BYTE,
    CHAR,
    ERROR_CASES,
    FULL_DISK,
    OUTPUTS,
    TRAINING,
    WORD,
    age_and_memory,
)

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "golden"
OUT = FIXTURES / "out"
ERRORS = FIXTURES / "errors.jsonl"
RECORD = os.environ.get("RNNCLI_GOLDEN_RECORD") == "1"
CPU = FIXTURES / "cpu.txt"  # the CPU the recordings were made on


def this_cpu() -> str:
    from rnncli.base.machine import cpu_description

    name, lanes = cpu_description()
    return f"{name}; {lanes} float32 lanes\n"


NUMBER = re.compile(rb"-?\d+\.\d+(?:[eE][-+]?\d+)?|-?\d+[eE][-+]?\d+")


def same_but_last_bits(expected: bytes, got: bytes, rel: float = 1e-4) -> bool:
    """On a CPU other than the recording's (another BLAS, another vector width), sums round
    differently: the text must match everywhere but in its decimal numbers, which must agree to
    `rel` (4-decimal figures may differ in their last digit)."""
    a, b = NUMBER.split(expected), NUMBER.split(got)
    x, y = NUMBER.findall(expected), NUMBER.findall(got)
    if a != b or len(x) != len(y):
        return False
    return all(
        abs(float(u) - float(v)) <= rel * max(abs(float(u)), abs(float(v)), 1e-3) for u, v in zip(x, y)
    )


def _parts(path: Path) -> tuple[dict, bytes]:
    """A checkpoint's header (tensor table and metadata strings) and its data bytes: the
    safetensors layout, which checkpoint compatibility keeps as it is."""
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def _sealed(path: Path, header: dict, data: bytes) -> None:
    """Write a checkpoint with checksums that agree with what it now holds (an edited file that
    only the validation of its settings can refuse): CRC-32 of each tensor's bytes, and of the
    table with every metadata string but the checksums, as the format defines them."""
    meta = header["__metadata__"]
    table = {k: v for k, v in header.items() if k != "__metadata__"}
    tensors = {k: f"{zlib.crc32(data[slice(*v['data_offsets'])]):08x}" for k, v in table.items()}
    rest = {k: v for k, v in meta.items() if k != "checksums"}
    blob = json.dumps([table, rest], sort_keys=True, separators=(",", ":")).encode()
    meta["checksums"] = json.dumps({"header": f"{zlib.crc32(blob):08x}", "tensors": tensors})
    head = json.dumps({"__metadata__": meta, **table}, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + data)


def _make_scratch(w: Path) -> None:
    for name in ("corpus.txt", "notes.txt", CHAR, WORD, BYTE):
        shutil.copy(FIXTURES / name, w / name)
    (w / "prompts.txt").write_text("HUGH:\nWALTER:\n")
    notes = (FIXTURES / "notes.txt").read_text()
    (w / "head.txt").write_text(notes[: notes.index("\n\n", 200) + 1])  # (per-token output kept short)
    (w / "empty.txt").write_bytes(b"")
    (w / "one.txt").write_bytes(b"a")
    (w / "binary.txt").write_bytes(b"abc\xff\xfedef")
    (w / "junk.safetensors").write_bytes(b"hello there, not a checkpoint at all")
    blob = (w / CHAR).read_bytes()
    (w / "head_only.safetensors").write_bytes(blob[:3000])
    (w / "short.safetensors").write_bytes(blob[:-100])

    header, data = _parts(w / CHAR)
    begin, _ = header["head.bias"]["data_offsets"]
    flipped = bytearray(data)
    flipped[begin + 2] ^= 0x20
    n = len(blob) - len(data)
    (w / "flipped.safetensors").write_bytes(blob[:n] + bytes(flipped))
    seed = b'rng_seed\\": 3'  # (inside the JSON string of the training settings)
    assert seed in blob[:n]
    (w / "flipped_header.safetensors").write_bytes(blob[:n].replace(seed, seed[:-1] + b"7", 1) + data)

    def edit(name: str, change) -> None:
        header, data = _parts(w / CHAR)
        data = change(header["__metadata__"], header, data) or data
        _sealed(w / name, header, data)

    def vocabulary(meta, header, data):
        tokenizer = json.loads(meta["tokenizer"])
        tokenizer["vocab"] = tokenizer["vocab"][:-1]
        meta["tokenizer"] = json.dumps(tokenizer)

    def nan(meta, header, data):
        begin, _ = header["head.weight"]["data_offsets"]
        return data[:begin] + struct.pack("<f", float("nan")) + data[begin + 4 :]

    edit("bad_cell.safetensors", lambda meta, *_: meta.update(model=meta["model"].replace('"gru"', '"xyz"')))
    edit("short_vocab.safetensors", vocabulary)
    edit("nan.safetensors", nan)
    edit("newer.safetensors", lambda meta, *_: meta.update(format_version="9"))


# --- running ------------------------------------------------------------------------------------


def _env() -> dict:
    """This environment (its kernel cache included, shared with the other tests) less what would
    change what rnncli prints: a default model, colours, a terminal width, the BLAS or tuning
    choice, numba's thread count."""
    drop = (
        "RNNCLI_MODEL",
        "RNNCLI_TUNE",
        "RNNCLI_BLAS",
        "FORCE_COLOR",
        "NO_COLOR",
        "COLUMNS",
        "LINES",
        "NUMBA_NUM_THREADS",
        "NUMBA_ENABLE_CUDASIM",
    )
    return {k: v for k, v in os.environ.items() if k not in drop}


def _run(w: Path, argv: list, stdin: str | None) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of `python -m rnncli ARGV` in folder w, stdin from a file there
    (or nothing)."""
    args = [os.fsencode(a) if isinstance(a, str) else a for a in argv]
    full = stdin == FULL_DISK
    with contextlib.ExitStack() as files:
        source = files.enter_context(open(w / stdin if stdin and not full else os.devnull, "rb"))
        sink = files.enter_context(open("/dev/full", "wb")) if full else subprocess.PIPE
        p = subprocess.run(
            [sys.executable, "-m", "rnncli", *args],
            cwd=w,
            env=_env(),
            stdin=source,
            stdout=sink,
            stderr=subprocess.PIPE,
            timeout=600,
            check=False,
        )
    return p.returncode, p.stdout or b"", p.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every case run once, two at a time (the machine's cores), in one scratch folder: name ->
    (exit status, stdout, stderr, the page --html wrote)."""
    w = tmp_path_factory.mktemp("golden")
    _make_scratch(w)
    jobs = {name: (argv, stdin) for name, (argv, stdin, _) in OUTPUTS.items() if name not in TRAINING}
    jobs.update(ERROR_CASES)

    def training():
        return {name: _run(w, argv, stdin) for name, (argv, stdin, _) in TRAINING.items()}

    with ThreadPoolExecutor(2) as pool:
        chain = pool.submit(training)
        futures = {name: pool.submit(_run, w, argv, stdin) for name, (argv, stdin) in jobs.items()}
        results = {name: f.result() for name, f in futures.items()} | chain.result()
    results["page"] = (w / "page.html").read_bytes() if (w / "page.html").exists() else b""
    results["tensors"] = _tensor_digests(w / "run.safetensors") if (w / "run.safetensors").exists() else {}
    if RECORD:
        _record(results)
    return results


def _tensor_digests(path: Path) -> dict:
    """SHA-256 of each tensor's bytes in a checkpoint (its metadata holds times, so not the file's)."""
    header, data = _parts(path)
    return {
        k: hashlib.sha256(data[v["data_offsets"][0] : v["data_offsets"][1]]).hexdigest()[:16]
        for k, v in sorted(header.items())
        if k != "__metadata__"
    }


def _stdout(name: str, results) -> bytes:
    normalise = OUTPUTS[name][2]
    out = results[name][1]
    return normalise(out.decode()).encode() if normalise else out


def _error(name: str, results) -> dict:
    """What is recorded of an error case: its exit status, stdout, and the last line of stderr, the
    error (a command that got under way first, a cold kernel cache's compile, may say so above it)."""
    argv, _ = ERROR_CASES[name]
    code, out, err = results[name]
    last = err.decode(errors="replace").splitlines(keepends=True)[-1:]
    return {
        "case": name,
        "argv": [a if isinstance(a, str) else os.fsdecode(a) for a in argv],
        "exit": code,
        "stdout": out.decode(errors="replace"),
        "stderr": age_and_memory("".join(last)),
    }


def _digests(results) -> dict:
    """The page's comments name the module that inlines its parts (rnncli/page.py before issue 22,
    rnncli/cli/page.py after): a path in the source tree, not data, so it is left out of the digest."""
    page = re.sub(rb"rnncli/[a-z_/]+\.py", b"rnncli/<module>.py", results["page"])
    return {"page.html": hashlib.sha256(page).hexdigest(), "run.safetensors": results["tensors"]}


def _record(results) -> None:
    OUT.mkdir(exist_ok=True)
    for stale in OUT.glob("*.txt"):
        stale.unlink()
    for name in OUTPUTS:
        (OUT / f"{name}.txt").write_bytes(_stdout(name, results))
    ERRORS.write_text("".join(json.dumps(_error(name, results)) + "\n" for name in ERROR_CASES))
    (FIXTURES / "digests.json").write_text(json.dumps(_digests(results), indent=1) + "\n")
    CPU.write_text(this_cpu())


# --- the comparisons ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(OUTPUTS))
def test_stdout_is_the_recorded_one(runs, name):
    code, _, err = runs[name]
    assert code == 0, err.decode()
    expected, got = (OUT / f"{name}.txt").read_bytes(), _stdout(name, runs)
    if got != expected and not (CPU.read_text() != this_cpu() and same_but_last_bits(expected, got)):
        diff = difflib.unified_diff(
            expected.decode(errors="replace").splitlines(keepends=True),
            got.decode(errors="replace").splitlines(keepends=True),
            "recorded",
            "now",
        )
        shown = "".join(list(diff)[:60])
        pytest.fail(f"{name}: stdout differs from tests/fixtures/golden/out/{name}.txt\n{shown}")


@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_error_line_is_the_recorded_one(runs, name):
    recorded = {e["case"]: e for e in map(json.loads, ERRORS.read_text().splitlines())}
    got = _error(name, runs)
    assert got["exit"] != 0 and got["stdout"] == "" and b"Traceback" not in runs[name][2], runs[name][2]
    assert got["stderr"].startswith("rnncli: error: ") and got["stderr"].endswith("\n"), got
    assert got == recorded[name]


def test_the_page_and_the_trained_weights_are_the_recorded_ones(runs):
    """inspect --html's page (tens of kB of scripts and data, so kept as a digest) and the tensors
    that train and --resume wrote."""
    if CPU.read_text() != this_cpu():
        pytest.skip(f"recorded on {CPU.read_text().strip()}; digests hold on that CPU only")
    recorded = json.loads((FIXTURES / "digests.json").read_text())
    assert _digests(runs) == recorded


def test_every_recording_has_a_case():
    names = {p.stem for p in OUT.glob("*.txt")}
    assert names == set(OUTPUTS), names ^ set(OUTPUTS)
    assert [e["case"] for e in map(json.loads, ERRORS.read_text().splitlines())] == list(ERROR_CASES)
