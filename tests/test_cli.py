"""The command line end to end: data on stdout, one-line errors on stderr, numba kept out of --help."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from rnncli.cli import main as cli
from rnncli.model.settings import ModelSettings, TrainSettings
from rnncli.run.bench import CONFIGS
from rnncli.run.options import RunOptions

ROOT = Path(__file__).resolve().parents[1]
CORPUS = str(ROOT / "sample_corpora" / "forecasts.txt")
TINY = ["--hidden", "24", "--embed", "8", "--batch", "8", "--seq", "16"]


def rnncli(*args, stdin=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "rnncli", *args], input=stdin, capture_output=True, cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "m.safetensors"
    r = rnncli("train", CORPUS, *TINY, "--steps", "30", "--eval-every", "10", "--out", str(path), "--json")
    assert r.returncode == 0, r.stderr.decode()
    assert rnncli("generate", "--model", str(path), "-n", "1").returncode == 0  # compiles the decoder
    return path, [json.loads(line) for line in r.stdout.decode().splitlines()]


def test_train_json_events(trained):
    _, events = trained
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == 30 and events[-1]["event"] == "done"
    assert {"step", "train_loss", "tokens_per_s"} <= steps[0].keys()
    assert [e["step"] for e in steps if "val_loss" in e] == [10, 20, 30]


def test_generate_is_repeatable_and_streams_the_seed(trained):
    path, _ = trained
    args = ["generate", "--model", str(path), "--seed", "Monday", "-n", "80", "--rng-seed", "7"]
    a, b = rnncli(*args), rnncli(*args)
    assert a.returncode == 0 and a.stdout == b.stdout
    text = a.stdout.decode()
    assert text.startswith("Monday") and len(text) == len("Monday") + 80
    assert a.stderr == b""
    greedy = rnncli("generate", "--model", str(path), "-n", "20", "--greedy", "--no-echo")
    assert len(greedy.stdout.decode()) == 20


def test_generate_names_unknown_seed_characters(trained):
    path, _ = trained
    r = rnncli("generate", "--model", str(path), "--seed", "Mon§day€", "-n", "5")
    assert r.returncode == 0
    assert "§" in r.stderr.decode() and "€" in r.stderr.decode()


def test_generate_uses_the_default_checkpoint_and_the_environment(trained, tmp_path):
    path, _ = trained
    (tmp_path / "rnncli.safetensors").write_bytes(path.read_bytes())
    assert rnncli("generate", "-n", "3", cwd=tmp_path).returncode == 0
    env_run = subprocess.run(
        [sys.executable, "-m", "rnncli", "generate", "-n", "3"],
        capture_output=True,
        env={**__import__("os").environ, "RNNCLI_MODEL": str(path)},
        cwd=ROOT,
    )
    assert env_run.returncode == 0


def test_eval_reads_stdin_and_prints_json(trained):
    path, _ = trained
    text = Path(CORPUS).read_bytes()[:5000]
    r = rnncli("eval", "--model", str(path), "-", "--json", stdin=text)
    assert r.returncode == 0, r.stderr.decode()
    score = json.loads(r.stdout)
    assert {"nats_per_token", "bits_per_char", "perplexity", "tokens"} <= score.keys()
    assert score["bits_per_char"] == pytest.approx(score["nats_per_token"] / 0.6931471805599453, rel=1e-3)


def test_inspect_json(trained):
    path, _ = trained
    info = json.loads(rnncli("inspect", str(path), "--json").stdout)
    assert info["model"]["hidden"] == 24 and info["progress"]["step"] == 30
    assert info["parameters"] > 0 and len(info["history"]) == 3
    human = rnncli("inspect", str(path))
    assert "loss" in human.stdout.decode() and human.returncode == 0


@pytest.mark.parametrize(
    "argv", [["--help"], ["train", "--help"], ["inspect", "CKPT"], ["inspect", "CKPT", "--json"]]
)
def test_help_and_inspect_leave_numba_out(trained, argv):
    path, _ = trained
    argv = [str(path) if a == "CKPT" else a for a in argv]
    code = (
        "import sys; from rnncli.cli.main import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print('numba' in sys.modules, file=sys.stderr)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert r.stderr.decode().strip().splitlines()[-1] == "False"


def test_a_closed_pipe_ends_quietly(trained):
    path, _ = trained
    p = subprocess.run(
        f"{sys.executable} -m rnncli generate --model {path} -n 200000 | head -c 10",
        shell=True,
        capture_output=True,
    )
    assert len(p.stdout) == 10 and p.stderr == b""


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "no-such-file.txt"], "no such file"),
        (["train", "EMPTY"], "empty"),
        (["train", "SHORT"], "too short"),
        (["train", "BINARY"], "--tokenizer byte"),
        (["train", "SHORT", "--batch", "many"], "--batch"),
        (["train", "SHORT", "--dropout", "1.5"], "dropout"),
        (["train", "SHORT", "--cell", "transformer"], "cell"),
        (
            ["train", "LONG", "--out", "/no/such/folder/m.safetensors"],
            "the folder /no/such/folder does not exist",
        ),
        (["generate", "--model", "SHORT"], "not a safetensors"),
        (["eval", "SHORT", "--model", "no-such.safetensors"], "no such checkpoint"),
        (["inspect", "SHORT"], "not a safetensors"),
        (["generate", "--model", "CKPT", "--top-p", "0"], "top-p"),
    ],
)
def test_bad_input_is_one_line_on_stderr(tmp_path, trained, args, message):
    files = {
        "EMPTY": b"",
        "SHORT": b"just a few words\n",
        "BINARY": b"text \xff\xfe\x00 bytes",
        "LONG": Path(CORPUS).read_bytes(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    args = [str(trained[0]) if a == "CKPT" else str(tmp_path / a) if a in files else a for a in args]
    r = rnncli(*args)
    err = r.stderr.decode()
    assert r.returncode != 0 and r.stdout == b""
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert message in err


def test_flags_become_settings(monkeypatch):
    seen = {}
    monkeypatch.setattr("rnncli.cli.train_view.run_training", lambda *a: seen.update(args=a))
    with pytest.raises(SystemExit) as exit_:
        cli.main(
            [
                "train",
                "a.txt",
                "b.txt",
                "--cell",
                "gru",
                "--lr",
                "0.01",
                "--steps",
                "5",
                "--json",
                "--recipe",
                "plain",
            ]
        )
    assert exit_.value.code == 0
    corpus, model, settings, options, json_out, plan = seen["args"]
    assert corpus == ["a.txt", "b.txt"] and model == ModelSettings(cell="gru")
    assert (
        settings == TrainSettings(lr=0.01, steps=5, recipe="plain")
        and options.resume is None
        and json_out is True
    )
    # None: as mpiexec says
    assert options.allow_new_corpus is False and options.distributed is None and plan is False
    assert (
        options.force is False and options.more is None and options.tune is True and options.device == "auto"
    )
    with pytest.raises(SystemExit):
        cli.main(["train", "a.txt", "--time", "60", "--plan", "--no-tune", "--threads", "1"])
    # (the recipe's default is TrainConfig's)
    assert seen["args"][2].given() == {"time": 60.0} and seen["args"][5] is True
    assert seen["args"][3].tune is False and seen["args"][3].threads == 1 and "RNNCLI_TUNE" not in os.environ
    with pytest.raises(SystemExit):
        cli.main(["train", "a.txt", "--resume", "r.st", "--more", "10m", "--force"])
    assert seen["args"][3] == RunOptions(resume="r.st", more="10m", force=True, notes=seen["args"][3].notes)


def test_inspect_flags_become_a_probe_config(monkeypatch):
    from rnncli.model.config import ProbeConfig

    seen = {}
    monkeypatch.setattr("rnncli.cli.probe_view.run_probe", lambda *a, **k: seen.update(args=a))
    with pytest.raises(SystemExit) as exit_:
        cli.main(
            [
                "inspect",
                "m.st",
                "--text",
                "t.txt",
                "--neuron",
                "1:17",
                "--neuron",
                "0:3",
                "--state",
                "c",
                "--top",
                "4",
                "--find-neurons",
                "--match",
                "10:20",
                "--threshold",
                "0.5",
                "--html",
                "p.html",
            ]
        )
    assert exit_.value.code == 0
    path, sources, cfg, threads, json_out, _ = seen["args"]
    assert path == "m.st" and sources == ["t.txt"] and threads is None and json_out is False
    assert cfg == ProbeConfig(
        neurons=((1, 17), (0, 3)),
        state="c",
        top=4,
        find_neurons=True,
        match=(10, 20),
        threshold=0.5,
        html="p.html",
    )


@pytest.mark.parametrize("tokenizer", ["byte", "word"])
def test_train_from_stdin_with_other_tokenizers(tmp_path, tokenizer):
    out = tmp_path / "m.safetensors"
    text = Path(CORPUS).read_bytes()[:60000]
    r = rnncli("train", "-", *TINY, "--steps", "5", "--tokenizer", tokenizer, "--out", str(out), stdin=text)
    assert r.returncode == 0, r.stderr.decode()
    info = json.loads(rnncli("inspect", str(out), "--json").stdout)
    assert info["tokenizer"] == tokenizer and (info["vocab_size"] == 256) == (tokenizer == "byte")
    gen = rnncli("generate", "--model", str(out), "--seed", "Monday morning", "-n", "20", "--rng-seed", "1")
    assert gen.returncode == 0 and gen.stdout.decode().startswith("Monday morning")
    score = json.loads(rnncli("eval", "--model", str(out), "--json", stdin=text[:3000]).stdout)
    assert score["tokens"] > 0 and score["bits_per_char"] > 0


def test_bench_reports_rates_as_json():
    r = rnncli(
        "bench", "-c", "small-rnn", "--measure", "eval", "--measure", "generate", "--repeats", "1", "--json"
    )
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)
    assert out["machine"]["matmul_gflops"] > 0 and out["machine"]["memory_gb_per_s"] > 0
    rows = {(x["config"], x["measure"]): x for x in out["results"]}
    assert set(rows) == {("small-rnn", "eval"), ("small-rnn", "generate")}
    cfg = CONFIGS["small-rnn"]
    for (_, what), x in rows.items():  # each figure the rate times its own count
        assert x["rate"] > 0 and x["impl"] == "rnncli"
        assert x["gflops"] == pytest.approx(x["rate"] * cfg.flops_per_token(what) / 1e9)
        assert x["gflops_nominal"] == pytest.approx(
            x["rate"] * cfg.flops_per_token(what, executed=False) / 1e9
        )
    generate = rows[("small-rnn", "generate")]
    assert generate["weight_gb_per_s"] == pytest.approx(generate["rate"] * cfg.weight_bytes() / 1e9)
    assert "unknown --config" in rnncli("bench", "-c", "huge").stderr.decode()


def test_bench_ratio_pairs_each_repeats_runs(monkeypatch):
    """The ratio is the median of each repeat's ours/theirs, not a ratio of two medians: a slow
    spell of the machine then lands on both sides of a pair."""
    from rnncli.run import bench

    rates = {"rnncli": iter([10.0, 12.0, 30.0]), "torch": iter([5.0, 12.0, 20.0])}
    monkeypatch.setattr(
        bench,
        "_child",
        lambda impl, name, measures, threads, device, tune=True, weights="f32": [
            {"measure": measures[0], "rate": next(rates[impl]), "warmup_s": 0.0}
        ],
    )
    rows = list(bench.run(["small-rnn"], ["eval"], 3, None, against_torch=True))
    ours = next(r for r in rows if r["impl"] == "rnncli")
    assert ours["rate"] == 12.0 and ours["ratio"] == 1.5  # pairs 2.0, 1.0, 1.5; medians 12 / 12 = 1


def test_bench_sides_take_turns_going_first_and_each_is_counted_by_its_own_work(monkeypatch):
    """A side that always ran first (a cold machine, or one the other had heated) would be favoured;
    rnncli's GFLOP/s count its layer 0 by the table it runs, PyTorch's the model's products."""
    from rnncli.run import bench

    order = []

    def child(impl, name, measures, threads, device, tune=True, weights="f32"):
        order.append(impl)
        return [{"measure": measures[0], "rate": 100.0, "warmup_s": 0.0}]

    monkeypatch.setattr(bench, "_child", child)
    rows = list(bench.run(["small-lstm"], ["train", "generate"], 3, None, against_torch=True))
    assert order == ["rnncli", "torch"] * 2 + ["torch", "rnncli"] * 2 + ["rnncli", "torch"] * 2
    cfg = CONFIGS["small-lstm"]
    for r in rows:
        ours = r["impl"] == "rnncli"
        assert r["gflops"] == pytest.approx(100.0 * cfg.flops_per_token(r["measure"], executed=ours) / 1e9)
        assert (r["gflops"] < r["gflops_nominal"]) == ours
    assert next(r for r in rows if r["impl"] == "torch" and r["measure"] == "generate")[
        "weight_gb_per_s"
    ] == pytest.approx(1e-7 * cfg.weight_bytes(False))


def test_bench_names_the_cpu_and_its_vector_width():
    from rnncli.base.machine import cpu_description

    zen2 = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 23\nmodel\t\t: 49\n"
        "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"
    )
    assert cpu_description(zen2) == ("AMD EPYC (family 23 model 49)", 8)
    assert cpu_description(zen2.replace("avx2", "avx2 avx512f"))[1] == 16
    assert cpu_description("processor : 0\nFeatures : fp asimd\nCPU part : 0xd0c\n")[1] == 4
    if os.path.exists("/proc/cpuinfo"):  # this machine's, read from where the samples above come from
        with open("/proc/cpuinfo") as f:
            assert cpu_description() == cpu_description(f.read())
    assert cpu_description("") == (platform.processor() or platform.machine(), 4)  # nothing known: the least
