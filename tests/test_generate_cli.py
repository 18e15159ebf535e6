"""`rnncli generate` end to end: samples, prompts from a pipe, stop strings, JSON records, stats."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile import assert_clean, run_cli

ROOT = Path(__file__).resolve().parents[1]
CORPUS = str(ROOT / "sample_corpora" / "forecasts.txt")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gen")
    out = {}
    for kind in ("char", "byte", "word"):
        path = folder / f"{kind}.safetensors"
        code, _, err = run_cli(
            "train",
            CORPUS,
            "--hidden",
            "24",
            "--embed",
            "8",
            "--batch",
            "8",
            "--seq",
            "16",
            "--steps",
            "30",
            "--tokenizer",
            kind,
            "--out",
            str(path),
        )
        assert code == 0, err
        out[kind] = str(path)
    return out


def gen(model, *args, stdin=b""):
    code, out, err = run_cli("generate", "-m", model, "--rng-seed", "4", *args, stdin=stdin)
    assert code == 0, err
    return out, err


def test_samples_are_numbered_and_sample_i_does_not_depend_on_n(models):
    one, _ = gen(models["char"], "--seed", "Monday", "-n", "60", "--json")
    three, _ = gen(models["char"], "--seed", "Monday", "-n", "60", "-N", "3", "--json")
    records = [json.loads(line) for line in three.splitlines()]
    assert [r["index"] for r in records] == [1, 2, 3]
    assert records[0]["text"] == json.loads(one)["text"] and records[1]["text"] != records[0]["text"]
    r = records[0]
    assert r["prompt"] == "Monday" and r["tokens"] == 60 and r["chars"] == 60 and r["stop_reason"] == "length"
    assert {"prompt_tokens_per_s", "first_token_s", "tokens_per_s", "chars_per_s"} <= r["stats"].keys()
    human, _ = gen(models["char"], "--seed", "Monday", "-n", "60", "-N", "3")
    assert human.startswith("--- sample 1 ---\nMonday" + r["text"] + "\n--- sample 2 ---\nMonday")


@pytest.mark.parametrize("kind", ["char", "byte", "word"])
def test_prompts_from_a_pipe_one_answer_each(models, kind):
    prompts = "Monday\nTuesday night\n\nthé café\n"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnncli",
            "generate",
            "-m",
            models[kind],
            "--prompts",
            "-",
            "-n",
            "30",
            "--json",
            "--rng-seed",
            "1",
        ],
        input=prompts.encode(),
        capture_output=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr.decode()
    records = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert [r["prompt"] for r in records] == prompts.splitlines()
    assert all(r["tokens"] == 30 for r in records)
    lines, _ = gen(models[kind], "--prompts", "-", "-n", "30", stdin=prompts.encode())
    assert len(lines.splitlines()) == 4 and lines.splitlines()[1].startswith("Tuesday night")


def test_a_stop_string_ends_each_answer_before_it(models):
    full = json.loads(gen(models["char"], "--seed", "Monday", "-n", "300", "--json")[0])["text"]
    stop = full[100:102]
    cut = json.loads(
        gen(
            models["char"], "--seed", "Monday", "-n", "300", "--json", "--stop", stop, "--stop", "never there"
        )[0]
    )
    assert cut["text"] == full[: full.find(stop)] and cut["stop_reason"] == "stop"
    streamed, _ = gen(models["char"], "--seed", "Monday", "-n", "300", "--stop", stop)
    assert streamed == "Monday" + cut["text"]


def test_samplers_max_time_and_stats(models):
    out, err = gen(
        models["word"],
        "--seed",
        "Monday",
        "-n",
        "40",
        "--min-p",
        "0.05",
        "--repeat-penalty",
        "1.3",
        "--repeat-last-n",
        "16",
        "--top-k",
        "20",
        "--top-p",
        "0.9",
        "--stats",
    )
    assert out.startswith("Monday") and err.startswith("rnncli: prompt ") and "chars/s" in err
    timed = json.loads(gen(models["char"], "-n", "100000000", "--max-time", "0.2", "--json")[0])
    assert timed["stop_reason"] == "time" and 0 < timed["tokens"] < 100000000


def test_a_closed_pipe_ends_quietly_for_samples_and_prompts(models):
    for args in (["-N", "4", "-n", "100000"], ["--prompts", CORPUS, "-n", "50"]):
        p = subprocess.run(
            f"{sys.executable} -m rnncli generate -m {models['char']} {' '.join(args)} | head -c 10",
            shell=True,
            capture_output=True,
            timeout=120,
        )
        assert len(p.stdout) == 10 and p.stderr == b""


@pytest.mark.parametrize(
    "args,message",
    [
        (["--min-p", "2"], "--min-p"),
        (["--repeat-penalty", "0"], "--repeat-penalty"),
        (["--repeat-last-n", "-1"], "--repeat-last-n"),
        (["--max-time", "0"], "--max-time"),
        (["-N", "0"], "--num-samples"),
        (["--stop", ""], "--stop"),
        (["--prompts", "-", "--seed", "x"], "--seed and --prompts"),
        (["--prompts", "/no/such"], "no such file"),
    ],
)
def test_bad_generation_options_are_one_line(models, args, message):
    code, out, err = run_cli("generate", "-m", models["char"], *args, stdin=b"Monday\n")
    assert_clean(code, err, allowed=(1, 2))
    assert message in err and out == ""


def test_prompt_lines_split_at_newlines_only(models):
    out, _ = gen(models["char"], "--prompts", "-", "-n", "5", "--json", stdin="Mon\x0cday\r\nTue\n".encode())
    assert [json.loads(line)["prompt"] for line in out.splitlines()] == ["Mon\x0cday", "Tue"]
