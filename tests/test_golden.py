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
  free in the out-of-memory refusal.
Numbers depend on the thread count (eval --json and train's losses differ in their last digits
between --threads 1 and 2; generation does not), so every command that takes --threads is given
2, and every one that takes --device is given cpu (a GPU, where there is one, would be chosen).
The products of these narrow models are all below the size that tuning measures (tune.SMALL), so
they take the fixed rule's path; --no-tune is given anyway where it is an option. The recordings
are this machine's (its BLAS and vector width decide the last bits); on another CPU, record first.
"""
from __future__ import annotations

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

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "golden"
OUT = FIXTURES / "out"
ERRORS = FIXTURES / "errors.jsonl"
RECORD = os.environ.get("RNNCLI_GOLDEN_RECORD") == "1"

CHAR, WORD, BYTE = "char_gru.safetensors", "word_lstm.safetensors", "byte_rnn.safetensors"
CPU = ["--device", "cpu"]
FIXED = ["--threads", "2", "--device", "cpu"]  # (eval and train also take --no-tune; inspect does not)
TINY = ["--recipe", "plain", "--cell", "lstm", "--layers", "2", "--hidden", "8", "--embed", "8", "--batch", "4",
        "--seq", "16", "--rng-seed", "5", *FIXED, "--no-tune"]


# --- what is normalised --------------------------------------------------------------------------

def _timings(text: str, keys: tuple[str, ...]) -> str:
    """Replace the JSON values of `keys` (numbers or null) by "<clock>"."""
    return re.sub(r'"(%s)": [^,}\]]+' % "|".join(keys), r'"\1": "<clock>"', text)


def clock_fields_of_generation(text: str) -> str:
    """generate --json: a sample's `stats` are timings of its batch; the counts stay."""
    keys = ("prompt_s", "first_token_s", "decode_s", "prompt_tokens_per_s", "tokens_per_s", "chars_per_s")
    return _timings(text, keys)


def clock_fields_of_training(text: str) -> str:
    """train --json: speeds and durations (the losses, steps and rates are compared as printed: with
    the seed and the threads fixed they are the same bits on every run)."""
    return _timings(text, ("tokens_per_s", "elapsed_s", "train_s", "compile_s", "run_elapsed_s"))


def measured_speed(text: str) -> str:
    """train --plan with --steps: the recipe's choice does not depend on the speed when the stop is a
    step count, but the tokens/s it measured and the seconds it predicts from them do."""
    text = re.sub(r"at [0-9.]+k tokens/s", "at <measured>k tokens/s", text)
    text = re.sub(r"about [0-9,.]+ s of training", "about <predicted> s of training", text)
    return _timings(text, ("seconds", "tokens_per_s", "compile_s"))


def age_and_memory(text: str) -> str:
    """Error lines: a checkpoint's age ('saved 3 minutes ago') is the clock's, and the memory
    available is the machine's."""
    text = re.sub(r"saved [^)]* ago", "saved <age> ago", text)
    return re.sub(r"more than the [0-9.]+ [KMGT]iB available", "more than the <free> available", text)


# --- the cases ---------------------------------------------------------------------------------------

# name: (argv, stdin file or None, normaliser or None). Each prints data on stdout and exits 0.
OUTPUTS = {
    "version": (["--version"], None, None),
    "generate_char": (["generate", CHAR, "--seed", "CECILY:", "-n", "120", "--rng-seed", "7", *CPU], None, None),
    "generate_char_temperature_top_k": (["generate", CHAR, "--seed", "CECILY:", "-n", "120", "--rng-seed", "7",
                                         "-t", "0.7", "--top-k", "5", *CPU], None, None),
    "generate_char_top_p_min_p_penalty": (["generate", CHAR, "-s", "Good", "-n", "80", "--rng-seed", "1",
                                           "--top-p", "0.9", "--min-p", "0.05", "--repeat-penalty", "1.3",
                                           "--repeat-last-n", "16", *CPU], None, None),
    "generate_char_greedy_no_echo": (["generate", "-m", CHAR, "-n", "60", "--greedy", "--no-echo", *CPU], None, None),
    "generate_char_samples": (["generate", CHAR, "-s", "A", "-N", "3", "-n", "40", "--rng-seed", "2", *CPU], None,
                              None),
    "generate_char_stop_json": (["generate", CHAR, "-s", "A", "-N", "2", "-n", "200", "--rng-seed", "2",
                                 "--stop", "\n\n", "--json", *CPU], None, clock_fields_of_generation),
    "generate_char_prompts_stdin": (["generate", CHAR, "--prompts", "-", "-n", "30", "--rng-seed", "4", *CPU],
                                    "prompts.txt", None),
    "generate_word": (["generate", WORD, "-s", "the tide", "-n", "30", "--rng-seed", "5", *CPU], None, None),
    "generate_byte": (["generate", BYTE, "-s", "Good", "-n", "60", "--rng-seed", "5", *CPU], None, None),

    "eval_char_files": (["eval", CHAR, "notes.txt", "head.txt", *FIXED, "--no-tune"], None, None),
    "eval_char_file_and_stdin_json": (["eval", "-m", CHAR, "head.txt", "-", "--json", *FIXED, "--no-tune"],
                                      "notes.txt", None),
    "eval_char_held_out_json": (["eval", CHAR, "--held-out", "corpus.txt", "--json", *FIXED, "--no-tune"], None, None),
    "eval_word": (["eval", WORD, "notes.txt", *FIXED, "--no-tune"], None, None),
    "eval_byte_stdin_json": (["eval", BYTE, "--json", *FIXED, "--no-tune"], "notes.txt", None),

    "inspect_char": (["inspect", CHAR], None, None),
    "inspect_char_json": (["inspect", CHAR, "--json"], None, None),
    "inspect_word": (["inspect", WORD], None, None),
    "inspect_byte_json": (["inspect", "-m", BYTE, "--json"], None, None),
    "inspect_char_text_top_find_neurons_match_html": (["inspect", CHAR, "--text", "head.txt", "--top", "3",
                                                       "--find-neurons", "--match", "10:16", "--html", "page.html",
                                                       *FIXED], None, None),
    "inspect_char_text_json": (["inspect", CHAR, "--text", "head.txt", "--json", "--top", "2", "--neuron", "1:3",
                                "--find-neurons", "--match", "10:16", *FIXED], None, None),
    "inspect_word_text_stdin_json": (["inspect", WORD, "--text", "-", "--json", "--top", "2", "--neuron", "0:3",
                                      "--state", "c", *FIXED], "head.txt", None),
    "train_plan_auto_steps": (["train", "corpus.txt", "--steps", "50", "--plan", *FIXED, "--no-tune"], None,
                              measured_speed),
    "train_plan_auto_steps_json": (["train", "corpus.txt", "--steps", "50", "--plan", "--json", *FIXED, "--no-tune"],
                                   None, measured_speed),
}
# Run one after the other, in this order (the second goes on with what the first wrote).
TRAINING = {
    "train_json": (["train", "corpus.txt", *TINY, "--steps", "6", "--eval-every", "3", "--out", "run.safetensors",
                    "--json"], None, clock_fields_of_training),
    "train_resume_json": (["train", "corpus.txt", "--resume", "run.safetensors", "--more", "3steps", *FIXED,
                           "--no-tune", "--json"], None, clock_fields_of_training),
}
OUTPUTS.update(TRAINING)

FULL_DISK = "> /dev/full"  # (in the place of a stdin file: stdout is /dev/full)

# name: (argv, stdin file or None). Each ends with one line on stderr and a non-zero exit; the
# README's table row it stands for is in the comment.
ERROR_CASES = {
    # checkpoint not in safetensors form, cut short, padded
    "not_safetensors": (["inspect", "junk.safetensors"], None),
    "header_cut_short": (["inspect", "head_only.safetensors"], None),
    "data_cut_short": (["inspect", "short.safetensors"], None),
    # a flipped bit in a tensor a command reads
    "flipped_bit_eval": (["eval", "flipped.safetensors", "notes.txt", *FIXED], None),
    "flipped_bit_header": (["inspect", "flipped_header.safetensors"], None),
    # settings out of range, unknown cell; vocabulary against the embedding; NaN weights
    "unknown_cell": (["inspect", "bad_cell.safetensors"], None),
    "vocabulary_short": (["inspect", "short_vocab.safetensors"], None),
    "nan_weight": (["eval", "nan.safetensors", "notes.txt", *FIXED], None),
    # a checkpoint from a newer rnncli
    "newer_format": (["inspect", "newer.safetensors"], None),
    # stdout on a full disk
    "stdout_full": (["inspect", CHAR], FULL_DISK),
    # a numeric option out of range (1 from rnncli, 2 where the parser refuses it)
    "generate_negative_length": (["generate", CHAR, "-n", "-1", *CPU], None),
    "generate_negative_seed": (["generate", CHAR, "--rng-seed", "-1", *CPU], None),
    "generate_top_p": (["generate", CHAR, "--top-p", "2", *CPU], None),
    "generate_temperature": (["generate", CHAR, "-t", "-1", *CPU], None),
    "train_nan_lr": (["train", "corpus.txt", "--recipe", "plain", "--lr", "nan", "--out", "x.safetensors", *FIXED],
                     None),
    "train_zero_batch": (["train", "corpus.txt", "--recipe", "plain", "--batch", "0", "--out", "x.safetensors",
                          *FIXED], None),
    "train_zero_threads": (["train", "corpus.txt", "--threads", "0"], None),
    "train_more_unit": (["train", "corpus.txt", "--resume", CHAR, "--more", "10q"], None),
    # a model too large for memory
    "train_too_wide": (["train", "corpus.txt", "--hidden", "200000", "--recipe", "plain", "--plan", *FIXED], None),
    # the corpus empty (or whitespace), too short, not UTF-8
    "corpus_empty": (["train", "empty.txt", "--recipe", "plain", "--out", "x.safetensors", *FIXED], None),
    "corpus_too_short": (["train", "one.txt", "--recipe", "plain", "--out", "x.safetensors", *FIXED], None),
    "corpus_not_utf8": (["train", "binary.txt", "--recipe", "plain", "--out", "x.safetensors", *FIXED], None),
    # a missing file (or a directory)
    "eval_missing_file": (["eval", CHAR, "missing.txt", *FIXED], None),
    # train onto another run's checkpoint; --resume with nothing left; --resume on other text
    "train_onto_another_run": (["train", "corpus.txt", "--recipe", "plain", "--out", CHAR, *FIXED], None),
    "resume_nothing_left": (["train", "corpus.txt", "--resume", CHAR, *FIXED], None),
    "resume_other_text": (["train", "notes.txt", "--resume", CHAR, "--more", "2steps", *FIXED], None),
    # a checkpoint where text is expected, two models named, no model at all
    "eval_checkpoint_as_text": (["eval", "notes.txt", CHAR, *FIXED], None),
    "train_checkpoint_as_text": (["train", CHAR, "--recipe", "plain", *FIXED], None),
    "eval_two_models": (["eval", CHAR, WORD, "notes.txt", *FIXED], None),
    "eval_no_model": (["eval", "notes.txt", *FIXED], None),
    # a path option that cannot work
    "train_out_folder": (["train", "corpus.txt", "--recipe", "plain", "--out", ".", *FIXED], None),
    # --seed or --stop not UTF-8 (argv bytes, see _run)
    "seed_not_utf8": (["generate", CHAR, "-n", "3", "--seed", b"\xff\xfe", *CPU], None),
    "stop_not_utf8": (["generate", CHAR, "-n", "3", "--stop", b"\xff", *CPU], None),
    # inspect --text with a unit, state or span the model or text lacks; an option without --text
    "inspect_neuron_past_layers": (["inspect", CHAR, "--text", "notes.txt", "--neuron", "5:0", *FIXED], None),
    "inspect_neuron_without_text": (["inspect", CHAR, "--neuron", "1:3"], None),
}


# --- making the scratch folder ------------------------------------------------------------------

def _parts(path: Path) -> tuple[dict, bytes]:
    """A checkpoint's header (tensor table and metadata strings) and its data bytes: the
    safetensors layout, which checkpoint compatibility keeps as it is."""
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def _sealed(path: Path, header: dict, data: bytes) -> None:
    """Write a checkpoint with checksums that agree with what it now holds (an edited file that
    only the validation of its settings can refuse): CRC-32 of each tensor's bytes, and of the
    table with every metadata string but the checksums, as the format defines them."""
    meta = header["__metadata__"]
    table = {k: v for k, v in header.items() if k != "__metadata__"}
    tensors = {k: f"{zlib.crc32(data[v['data_offsets'][0]:v['data_offsets'][1]]):08x}" for k, v in table.items()}
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
    (w / "head.txt").write_text(notes[:notes.index("\n\n", 200) + 1])  # (per-token output kept short)
    (w / "empty.txt").write_bytes(b"")
    (w / "blank.txt").write_bytes(b"   \n\t \n")
    (w / "one.txt").write_bytes(b"a")
    (w / "binary.txt").write_bytes(b"abc\xff\xfedef")
    (w / "folder").mkdir()
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

    def cell(meta, header, data):
        meta["model"] = meta["model"].replace('"gru"', '"xyz"')

    def vocabulary(meta, header, data):
        tokenizer = json.loads(meta["tokenizer"])
        tokenizer["vocab"] = tokenizer["vocab"][:-1]
        meta["tokenizer"] = json.dumps(tokenizer)

    def nan(meta, header, data):
        begin, _ = header["head.weight"]["data_offsets"]
        return data[:begin] + struct.pack("<f", float("nan")) + data[begin + 4:]

    def newer(meta, header, data):
        meta["format_version"] = "9"

    edit("bad_cell.safetensors", cell)
    edit("short_vocab.safetensors", vocabulary)
    edit("nan.safetensors", nan)
    edit("newer.safetensors", newer)


# --- running ------------------------------------------------------------------------------------

def _env() -> dict:
    """This environment (its kernel cache included, shared with the other tests) less what would
    change what rnncli prints: a default model, colours, a terminal width, the BLAS or tuning
    choice, numba's thread count."""
    drop = ("RNNCLI_MODEL", "RNNCLI_TUNE", "RNNCLI_BLAS", "FORCE_COLOR", "NO_COLOR", "COLUMNS", "LINES",
            "NUMBA_NUM_THREADS", "NUMBA_ENABLE_CUDASIM")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _run(w: Path, argv: list, stdin: str | None) -> tuple[int, bytes, bytes]:
    args = [os.fsencode(a) if isinstance(a, str) else a for a in argv]
    with open(os.devnull, "rb") as nothing:
        if stdin == FULL_DISK:
            with open("/dev/full", "wb") as full:
                p = subprocess.run([sys.executable, "-m", "rnncli", *args], cwd=w, env=_env(), stdin=nothing,
                                   stdout=full, stderr=subprocess.PIPE, timeout=600)
            return p.returncode, b"", p.stderr
        source = open(w / stdin, "rb") if stdin else nothing
        with source:
            p = subprocess.run([sys.executable, "-m", "rnncli", *args], cwd=w, env=_env(), stdin=source,
                               capture_output=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


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
    return {k: hashlib.sha256(data[v["data_offsets"][0]:v["data_offsets"][1]]).hexdigest()[:16]
            for k, v in sorted(header.items()) if k != "__metadata__"}


def _stdout(name: str, results) -> bytes:
    normalise = OUTPUTS[name][2]
    out = results[name][1]
    return normalise(out.decode()).encode() if normalise else out


def _error(name: str, results) -> dict:
    argv, _ = ERROR_CASES[name]
    code, out, err = results[name]
    return {"case": name, "argv": [a if isinstance(a, str) else os.fsdecode(a) for a in argv], "exit": code,
            "stdout": out.decode(errors="replace"), "stderr": age_and_memory(err.decode(errors="replace"))}


def _digests(results) -> dict:
    return {"page.html": hashlib.sha256(results["page"]).hexdigest(), "run.safetensors": results["tensors"]}


def _record(results) -> None:
    OUT.mkdir(exist_ok=True)
    for stale in OUT.glob("*.txt"):
        stale.unlink()
    for name in OUTPUTS:
        (OUT / f"{name}.txt").write_bytes(_stdout(name, results))
    ERRORS.write_text("".join(json.dumps(_error(name, results)) + "\n" for name in ERROR_CASES))
    (FIXTURES / "digests.json").write_text(json.dumps(_digests(results), indent=1) + "\n")


# --- the comparisons ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(OUTPUTS))
def test_stdout_is_the_recorded_one(runs, name):
    code, _, err = runs[name]
    assert code == 0, err.decode()
    expected, got = (OUT / f"{name}.txt").read_bytes(), _stdout(name, runs)
    if got != expected:
        diff = difflib.unified_diff(expected.decode(errors="replace").splitlines(keepends=True),
                                    got.decode(errors="replace").splitlines(keepends=True), "recorded", "now")
        pytest.fail(f"{name}: stdout differs from tests/fixtures/golden/out/{name}.txt\n" + "".join(list(diff)[:60]))


@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_error_line_is_the_recorded_one(runs, name):
    recorded = {e["case"]: e for e in map(json.loads, ERRORS.read_text().splitlines())}
    got = _error(name, runs)
    assert got["exit"] != 0 and got["stdout"] == "" and got["stderr"].count("\n") == 1, got
    assert got == recorded[name]


def test_the_page_and_the_trained_weights_are_the_recorded_ones(runs):
    """inspect --html's page (tens of kB of scripts and data, so kept as a digest) and the tensors train and --resume wrote."""
    recorded = json.loads((FIXTURES / "digests.json").read_text())
    assert _digests(runs) == recorded


def test_every_recording_has_a_case():
    names = {p.stem for p in OUT.glob("*.txt")}
    assert names == set(OUTPUTS), names ^ set(OUTPUTS)
    assert [e["case"] for e in map(json.loads, ERRORS.read_text().splitlines())] == list(ERROR_CASES)
