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
are this machine's (its BLAS and vector width decide the last bits); on another CPU, record first.
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

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "golden"
OUT = FIXTURES / "out"
ERRORS = FIXTURES / "errors.jsonl"
RECORD = os.environ.get("RNNCLI_GOLDEN_RECORD") == "1"

CHAR, WORD, BYTE = "char_gru.safetensors", "word_lstm.safetensors", "byte_rnn.safetensors"
FIXED = "--threads 2 --device cpu"  # (eval and train also take --no-tune; inspect does not)
UNTUNED = f"{FIXED} --no-tune"
TINY = f"--recipe plain --cell lstm --layers 2 --hidden 8 --embed 8 --batch 4 --seq 16 --rng-seed 5 {UNTUNED}"
FULL_DISK = "> /dev/full"  # (in the place of a stdin file: stdout is /dev/full)


def cli(*parts) -> list:
    """argv from command-line strings, split at spaces, and lists, taken as they are (for an
    argument holding a space or bytes that are not UTF-8)."""
    return [a for part in parts for a in (part if isinstance(part, list) else part.split())]


# --- what is normalised --------------------------------------------------------------------------

def _timings(text: str, keys: tuple[str, ...]) -> str:
    """Replace the JSON values of `keys` (numbers or null) by "<clock>"."""
    names = "|".join(keys)
    return re.sub(rf'"({names})": [^,}}\]]+', r'"\1": "<clock>"', text)


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
    "version": (cli("--version"), None, None),
    "generate_char": (cli(f"generate {CHAR} --seed CECILY: -n 120 --rng-seed 7 --device cpu"), None, None),
    "generate_char_temperature_top_k": (
        cli(f"generate {CHAR} --seed CECILY: -n 120 --rng-seed 7 -t 0.7 --top-k 5 --device cpu"), None, None),
    "generate_char_top_p_min_p_penalty": (
        cli(f"generate {CHAR} -s Good -n 80 --rng-seed 1 --top-p 0.9 --min-p 0.05 --repeat-penalty 1.3",
            "--repeat-last-n 16 --device cpu"), None, None),
    "generate_char_greedy_no_echo": (cli(f"generate -m {CHAR} -n 60 --greedy --no-echo --device cpu"), None,
                                     None),
    "generate_char_samples": (cli(f"generate {CHAR} -s A -N 3 -n 40 --rng-seed 2 --device cpu"), None, None),
    "generate_char_stop_json": (cli(f"generate {CHAR} -s A -N 2 -n 200 --rng-seed 2", ["--stop", "\n\n"],
                                    "--json --device cpu"), None, clock_fields_of_generation),
    "generate_char_prompts_stdin": (cli(f"generate {CHAR} --prompts - -n 30 --rng-seed 4 --device cpu"),
                                    "prompts.txt", None),
    "generate_word": (cli(f"generate {WORD}", ["-s", "the tide"], "-n 30 --rng-seed 5 --device cpu"), None,
                      None),
    "generate_byte": (cli(f"generate {BYTE} -s Good -n 60 --rng-seed 5 --device cpu"), None, None),

    "eval_char_files": (cli(f"eval {CHAR} notes.txt head.txt {UNTUNED}"), None, None),
    "eval_char_file_and_stdin_json": (cli(f"eval -m {CHAR} head.txt - --json {UNTUNED}"), "notes.txt", None),
    "eval_char_held_out_json": (cli(f"eval {CHAR} --held-out corpus.txt --json {UNTUNED}"), None, None),
    "eval_word": (cli(f"eval {WORD} notes.txt {UNTUNED}"), None, None),
    "eval_byte_stdin_json": (cli(f"eval {BYTE} --json {UNTUNED}"), "notes.txt", None),

    "inspect_char": (cli(f"inspect {CHAR}"), None, None),
    "inspect_char_json": (cli(f"inspect {CHAR} --json"), None, None),
    "inspect_word": (cli(f"inspect {WORD}"), None, None),
    "inspect_byte_json": (cli(f"inspect -m {BYTE} --json"), None, None),
    "inspect_char_text_top_find_neurons_match_html": (
        cli(f"inspect {CHAR} --text head.txt --top 3 --find-neurons --match 10:16 --html page.html {FIXED}"),
        None, None),
    "inspect_char_text_json": (
        cli(f"inspect {CHAR} --text head.txt --json --top 2 --neuron 1:3",
            f"--find-neurons --match 10:16 {FIXED}"),
        None, None),
    "inspect_word_text_stdin_json": (
        cli(f"inspect {WORD} --text - --json --top 2 --neuron 0:3 --state c {FIXED}"), "head.txt", None),

    "train_plan_auto_steps": (cli(f"train corpus.txt --steps 50 --plan {UNTUNED}"), None, measured_speed),
    "train_plan_auto_steps_json": (cli(f"train corpus.txt --steps 50 --plan --json {UNTUNED}"), None,
                                   measured_speed),
}
# Run one after the other, in this order (the second goes on with what the first wrote).
TRAINING = {
    "train_json": (cli(f"train corpus.txt {TINY} --steps 6 --eval-every 3 --out run.safetensors --json"),
                   None,
                   clock_fields_of_training),
    "train_resume_json": (cli(f"train corpus.txt --resume run.safetensors --more 3steps {UNTUNED} --json"),
                          None, clock_fields_of_training),
}
OUTPUTS.update(TRAINING)

# name: (argv, stdin file or None). Each ends with one line on stderr and a non-zero exit; the
# README's table row it stands for is in the comment.
PLAIN = f"--recipe plain {FIXED}"
ERROR_CASES = {
    # checkpoint not in safetensors form, cut short, padded
    "not_safetensors": (cli("inspect junk.safetensors"), None),
    "header_cut_short": (cli("inspect head_only.safetensors"), None),
    "data_cut_short": (cli("inspect short.safetensors"), None),
    # a flipped bit in a tensor a command reads, or in the header
    "flipped_bit_eval": (cli(f"eval flipped.safetensors notes.txt {FIXED}"), None),
    "flipped_bit_header": (cli("inspect flipped_header.safetensors"), None),
    # settings out of range, unknown cell; vocabulary against the embedding; NaN weights
    "unknown_cell": (cli("inspect bad_cell.safetensors"), None),
    "vocabulary_short": (cli("inspect short_vocab.safetensors"), None),
    "nan_weight": (cli(f"eval nan.safetensors notes.txt {FIXED}"), None),
    # a checkpoint from a newer rnncli
    "newer_format": (cli("inspect newer.safetensors"), None),
    # stdout on a full disk
    "stdout_full": (cli(f"inspect {CHAR}"), FULL_DISK),
    # a numeric option out of range (1 from rnncli, 2 where the parser refuses it)
    "generate_negative_length": (cli(f"generate {CHAR} -n -1 --device cpu"), None),
    "generate_negative_seed": (cli(f"generate {CHAR} --rng-seed -1 --device cpu"), None),
    "generate_top_p": (cli(f"generate {CHAR} --top-p 2 --device cpu"), None),
    "generate_temperature": (cli(f"generate {CHAR} -t -1 --device cpu"), None),
    "train_nan_lr": (cli(f"train corpus.txt --lr nan --out x.safetensors {PLAIN}"), None),
    "train_zero_batch": (cli(f"train corpus.txt --batch 0 --out x.safetensors {PLAIN}"), None),
    "train_zero_threads": (cli("train corpus.txt --threads 0"), None),
    "train_more_unit": (cli(f"train corpus.txt --resume {CHAR} --more 10q"), None),
    # a model too large for memory
    "train_too_wide": (cli(f"train corpus.txt --hidden 200000 --plan {PLAIN}"), None),
    # the corpus empty (or whitespace), too short, not UTF-8
    "corpus_empty": (cli(f"train empty.txt --out x.safetensors {PLAIN}"), None),
    "corpus_too_short": (cli(f"train one.txt --out x.safetensors {PLAIN}"), None),
    "corpus_not_utf8": (cli(f"train binary.txt --out x.safetensors {PLAIN}"), None),
    # a missing file (or a directory)
    "eval_missing_file": (cli(f"eval {CHAR} missing.txt {FIXED}"), None),
    # train onto another run's checkpoint; --resume with nothing left; --resume on other text
    "train_onto_another_run": (cli(f"train corpus.txt --out {CHAR} {PLAIN}"), None),
    "resume_nothing_left": (cli(f"train corpus.txt --resume {CHAR} {FIXED}"), None),
    "resume_other_text": (cli(f"train notes.txt --resume {CHAR} --more 2steps {FIXED}"), None),
    # a checkpoint where text is expected, two models named, no model at all
    "eval_checkpoint_as_text": (cli(f"eval notes.txt {CHAR} {FIXED}"), None),
    "train_checkpoint_as_text": (cli(f"train {CHAR} {PLAIN}"), None),
    "eval_two_models": (cli(f"eval {CHAR} {WORD} notes.txt {FIXED}"), None),
    "eval_no_model": (cli(f"eval notes.txt {FIXED}"), None),
    # a path option that cannot work
    "train_out_folder": (cli(f"train corpus.txt --out . {PLAIN}"), None),
    # --seed or --stop not UTF-8
    "seed_not_utf8": (cli(f"generate {CHAR} -n 3 --seed", [b"\xff\xfe"], "--device cpu"), None),
    "stop_not_utf8": (cli(f"generate {CHAR} -n 3 --stop", [b"\xff"], "--device cpu"), None),
    # inspect --text with a unit the model lacks; an option that needs --text without it
    "inspect_neuron_past_layers": (cli(f"inspect {CHAR} --text notes.txt --neuron 5:0 {FIXED}"), None),
    "inspect_neuron_without_text": (cli(f"inspect {CHAR} --neuron 1:3"), None),
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
    (w / "head.txt").write_text(notes[:notes.index("\n\n", 200) + 1])  # (per-token output kept short)
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
        return data[:begin] + struct.pack("<f", float("nan")) + data[begin + 4:]

    edit("bad_cell.safetensors", lambda meta, *_: meta.update(model=meta["model"].replace('"gru"', '"xyz"')))
    edit("short_vocab.safetensors", vocabulary)
    edit("nan.safetensors", nan)
    edit("newer.safetensors", lambda meta, *_: meta.update(format_version="9"))


# --- running ------------------------------------------------------------------------------------

def _env() -> dict:
    """This environment (its kernel cache included, shared with the other tests) less what would
    change what rnncli prints: a default model, colours, a terminal width, the BLAS or tuning
    choice, numba's thread count."""
    drop = ("RNNCLI_MODEL", "RNNCLI_TUNE", "RNNCLI_BLAS", "FORCE_COLOR", "NO_COLOR", "COLUMNS", "LINES",
            "NUMBA_NUM_THREADS", "NUMBA_ENABLE_CUDASIM")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _run(w: Path, argv: list, stdin: str | None) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of `python -m rnncli ARGV` in folder w, stdin from a file there
    (or nothing)."""
    args = [os.fsencode(a) if isinstance(a, str) else a for a in argv]
    full = stdin == FULL_DISK
    with contextlib.ExitStack() as files:
        source = files.enter_context(open(w / stdin if stdin and not full else os.devnull, "rb"))
        sink = files.enter_context(open("/dev/full", "wb")) if full else subprocess.PIPE
        p = subprocess.run([sys.executable, "-m", "rnncli", *args], cwd=w, env=_env(), stdin=source,
                           stdout=sink, stderr=subprocess.PIPE, timeout=600, check=False)
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
    return {k: hashlib.sha256(data[v["data_offsets"][0]:v["data_offsets"][1]]).hexdigest()[:16]
            for k, v in sorted(header.items()) if k != "__metadata__"}


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
    return {"case": name, "argv": [a if isinstance(a, str) else os.fsdecode(a) for a in argv], "exit": code,
            "stdout": out.decode(errors="replace"), "stderr": age_and_memory("".join(last))}


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


# --- the comparisons ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(OUTPUTS))
def test_stdout_is_the_recorded_one(runs, name):
    code, _, err = runs[name]
    assert code == 0, err.decode()
    expected, got = (OUT / f"{name}.txt").read_bytes(), _stdout(name, runs)
    if got != expected:
        diff = difflib.unified_diff(expected.decode(errors="replace").splitlines(keepends=True),
                                    got.decode(errors="replace").splitlines(keepends=True), "recorded", "now")
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
    recorded = json.loads((FIXTURES / "digests.json").read_text())
    assert _digests(runs) == recorded


def test_every_recording_has_a_case():
    names = {p.stem for p in OUT.glob("*.txt")}
    assert names == set(OUTPUTS), names ^ set(OUTPUTS)
    assert [e["case"] for e in map(json.loads, ERRORS.read_text().splitlines())] == list(ERROR_CASES)
