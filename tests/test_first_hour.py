"""A new user's first hour (issue 27): no model overwritten by accident, --more on a resumed run,
one way to name a model, a word mode whose text survives the round trip, and the small cuts."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from rnncli.base.errors import RnncliError
from rnncli.data.text import Tokenizer, missing_note
from rnncli.run import runs
from tests.hostile import run_cli

ROOT = Path(__file__).resolve().parents[1]
CORPUS = str(ROOT / "sample_corpora" / "dialogues.txt")
TINY = [
    "--recipe",
    "plain",
    "--hidden",
    "16",
    "--embed",
    "8",
    "--batch",
    "4",
    "--seq",
    "16",
    "--eval-every",
    "5",
]


def train(*args) -> tuple[int, str, str]:
    return run_cli("train", CORPUS, *TINY, *args)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A finished 10-step run, and the folder it is in."""
    folder = tmp_path_factory.mktemp("first")
    code, _, err = train("--steps", "10", "--out", str(folder / "rnncli.safetensors"))
    assert code == 0, err
    return folder / "rnncli.safetensors"


def test_train_refuses_to_overwrite_another_runs_model_and_says_what_to_do(model, tmp_path):
    out = tmp_path / "m.safetensors"
    out.write_bytes(model.read_bytes())
    before = out.read_bytes()
    code, _, err = train("--steps", "2", "--out", str(out))
    assert code == 1 and out.read_bytes() == before and len(err.strip().splitlines()) == 1
    assert "holds another run's model (gru" not in err  # (a plain-recipe lstm)
    assert f"{out} holds another run's model (lstm 2x16 (char)" in err and "10 steps" in err and "ago" in err
    assert f"--resume {out}" in err and "--out NEW.safetensors" in err and "--force" in err
    code, _, err = train("--steps", "2", "--out", str(out), "--force")
    assert code == 0 and f"--force: replacing {out}" in err
    assert json.loads(run_cli("inspect", str(out), "--json")[1])["progress"]["step"] == 2
    text = tmp_path / "notes.txt"
    text.write_text("my notes")
    code, _, err = train("--steps", "2", "--out", str(text))
    assert code == 1 and "exists and is not an rnncli checkpoint" in err and text.read_text() == "my notes"


def test_a_resumed_run_may_write_to_another_file_of_its_own_run(model, tmp_path):
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(model.read_bytes())
    code, _, err = run_cli("train", CORPUS, "--resume", str(model), "--out", str(copy), "--more", "2steps")
    assert code == 0, err  # the same run's id: no refusal
    other = tmp_path / "other.safetensors"
    assert train("--steps", "2", "--out", str(other))[0] == 0
    code, _, err = run_cli("train", CORPUS, "--resume", str(model), "--out", str(other), "--more", "2steps")
    assert code == 1 and "holds another run's model" in err


def test_more_parses_units_and_refuses_the_rest():
    assert runs.More.parse("30s") == runs.More("time", 30.0) and runs.More.parse("90") == runs.More(
        "time", 90.0
    )
    assert runs.More.parse("10m") == runs.More("time", 600.0) and runs.More.parse("1h") == runs.More(
        "time", 3600.0
    )
    assert runs.More.parse("500steps") == runs.More("steps", 500.0)
    assert runs.More.parse("2 epochs") == runs.More("epochs", 2.0)
    for bad in ("", "s", "ten", "-5s", "1.5steps", "3 weeks", "nan", "infs"):
        with pytest.raises(RnncliError, match="--more takes|steps are whole"):
            runs.More.parse(bad)


def test_a_resume_with_nothing_left_says_so_and_more_asks_for_more(model, tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(model.read_bytes())
    code, _, err = run_cli("train", CORPUS, "--resume", str(path))
    assert code == 1 and "nothing left to do" in err and "has run its 10 steps" in err
    hint = err.split("`")[1]
    assert hint == f"rnncli train {shlex.quote(CORPUS)} --resume {path} --more 10steps"
    code, out, err = run_cli(*shlex.split(hint)[1:-2], "--more", "3steps", "--plan")
    assert code == 0 and "resume: step 10" in out and "3 more steps" in out, out + err
    code, out, err = run_cli(*shlex.split(hint)[1:-2], "--more", "3steps", "--json")
    done = json.loads(out.splitlines()[-1])
    assert code == 0 and done["step"] == 13 and done["session_steps"] == 3
    code, _, err = run_cli("train", CORPUS, "--resume", str(path), "--more", "5steps", "--steps", "40")
    assert code == 1 and "--more goes with --resume, without --time" in err
    assert "--more goes with --resume;" in train("--more", "5s", "--out", str(tmp_path / "x.st"))[2]


def test_the_done_line_counts_the_run_and_the_session(model, tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(model.read_bytes())
    code, _, err = run_cli("train", CORPUS, "--resume", str(path), "--more", "4steps")
    assert code == 0 and "after 14 steps in" in err and "(4 steps," in err and "this session)" in err


def test_one_way_to_name_a_model_on_every_command(model, tmp_path):
    m = str(model)
    text = tmp_path / "t.txt"
    text.write_text("MARGARET: Good morning.\n" * 20)
    first = run_cli("eval", m, str(text))
    assert first[0] == 0 and first[1] == run_cli("eval", str(text), "-m", m)[1]
    assert (
        run_cli("generate", m, "-n", "5", "--rng-seed", "1")[1]
        == run_cli("generate", "-m", m, "-n", "5", "--rng-seed", "1")[1]
    )
    assert run_cli("inspect", m, "--json")[1] == run_cli("inspect", "-m", m, "--json")[1]
    code, _, err = run_cli("eval", str(text), m)
    assert code == 1 and f"{m} is an rnncli checkpoint, not text to score" in err
    code, _, err = run_cli("train", m, "--steps", "1", "--out", str(tmp_path / "x.st"))
    assert code == 1 and f"{m} is an rnncli checkpoint, not text to learn from" in err and "--resume" in err
    code, _, err = run_cli("inspect", m, "--text", m)
    assert code == 1 and "not text to read" in err
    code, _, err = run_cli("generate", m, "-m", str(tmp_path / "other.st"))
    assert code == 1 and "two models named" in err


def test_a_missing_default_model_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RNNCLI_MODEL", raising=False)
    for argv in (["generate"], ["eval", "-"], ["inspect"]):
        code, _, err = run_cli(*argv, stdin=b"some text")
        assert code == 1 and "no such checkpoint: rnncli.safetensors (train one with `rnncli train" in err, (
            argv
        )


def test_eval_prints_a_line_per_file_and_a_total_and_scores_the_held_out_split(model, tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("MARGARET: Good morning, Tom.\n" * 10)
    b.write_text("TOM: The kettle is on.\n" * 12)
    code, out, _ = run_cli("eval", str(model), str(a), str(b))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3 and lines[0].startswith(str(a)) and lines[2].startswith("total")
    one = json.loads(run_cli("eval", str(model), str(a), "--json")[1])
    both = json.loads(run_cli("eval", str(model), str(a), str(b), "--json")[1])
    assert both["files"][0]["nats_per_token"] == pytest.approx(one["nats_per_token"])
    assert both["tokens"] == sum(f["tokens"] for f in both["files"])
    total = sum(f["nats_per_token"] * f["tokens"] for f in both["files"]) / both["tokens"]
    assert both["nats_per_token"] == pytest.approx(total)
    held = json.loads(run_cli("eval", str(model), "--held-out", CORPUS, "--json")[1])
    best = json.loads(run_cli("inspect", str(model), "--json")[1])["progress"]["best_val_loss"]
    # what training measured
    assert held["held_out"] and held["nats_per_token"] == pytest.approx(best, abs=1e-5)
    code, _, err = run_cli("eval", str(model), "--held-out", str(a))
    assert code == 1 and "is not the text this model was trained on" in err


def test_version_prompt_and_help_that_fits_80_columns(model):
    code, out, _ = run_cli("--version")
    assert code == 0 and out.strip() == f"rnncli {__import__('rnncli').__version__}"
    p = run_cli("generate", str(model), "-p", "MARG", "-n", "4", "--rng-seed", "3")[1]
    assert p == run_cli("generate", str(model), "--seed", "MARG", "-n", "4", "--rng-seed", "3")[
        1
    ] and p.startswith("MARG")
    env = dict(os.environ, COLUMNS="80", TERM="dumb")
    for cmd in ("train", "generate", "eval", "inspect", "bench"):
        r = subprocess.run(
            [sys.executable, "-m", "rnncli", cmd, "--help"], capture_output=True, env=env, timeout=60
        )
        text = r.stdout.decode()
        assert r.returncode == 0 and "--help" in text
        assert all(len(line) <= 80 for line in text.splitlines()), cmd
        assert "…" not in text and "[default: (" not in text, cmd
    assert (
        "--allow-new-corpus"
        in subprocess.run(
            [sys.executable, "-m", "rnncli", "train", "--help"], capture_output=True, env=env
        ).stdout.decode()
    )


def test_inspect_prints_numbers_as_people_write_them(tmp_path):
    out = tmp_path / "d.safetensors"
    code, _, err = run_cli(
        "train",
        CORPUS,
        "--recipe",
        "plain",
        "--hidden",
        "16",
        "--embed",
        "8",
        "--batch",
        "4",
        "--seq",
        "16",
        "--steps",
        "1",
        "--dropout",
        "0.3",
        "--lr",
        "0.001",
        "--out",
        str(out),
    )
    assert code == 0, err
    text = run_cli("inspect", str(out))[1]
    assert "dropout 0.3;" in text and "lr 0.001 " in text and "0000000" not in text


@pytest.mark.parametrize("kind", ["char", "byte", "word"])
def test_every_tokenizer_gives_back_the_text_it_read(kind):
    for path in sorted((ROOT / "sample_corpora").glob("*.txt")) + [ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        tok = Tokenizer.build(kind, text, 1_000_000)
        ids, missing = tok.encode(text)
        assert not missing and tok.decoder()(ids, True) == text, path.name


def test_unknown_words_are_listed_apart():
    note = missing_note("word", ["brown", "fox", "jumped", "quick"])
    assert "'brown', 'fox', 'jumped', 'quick'" in note
    many = missing_note("word", [f"w{i}" for i in range(20)])
    assert "and 8 more" in many


def test_the_word_recipe_sizes_the_embedding_to_the_network_and_counts_the_vocabulary():
    from rnncli.model import recipe

    words = recipe.Corpus(360_000, 19_000, 3_200)
    speed = recipe.Speed(2e10, vocab_s=4e-9, param_s=1e-9)  # (about a Zen 3's, measured)
    chosen = recipe.choose(words, {}, {"time": 30}, speed)
    assert chosen.model["embed"] <= chosen.model["hidden"]  # no 256-wide word vectors on a 16-unit network
    cfg = recipe.sized(words, {}, chosen.model["hidden"])
    # the vocabulary's pointwise work counts: the same model with it ignored is predicted much faster
    assert speed.token_seconds(cfg, 6400) > 2 * recipe.Speed(2e10).token_seconds(cfg, 6400)
    chars = recipe.Corpus(1_000_000, 50_000, 65)
    assert recipe.choose(chars, {}, {"time": 600}, speed).model["embed"] == 64  # char models as before


def test_a_first_training_run_compiles_generation_too(tmp_path, monkeypatch):
    from rnncli.kernels import jit
    from rnncli.run import sample

    asked = []
    # decode: cold
    monkeypatch.setattr(jit, "compiled_on_disk", lambda name="", exact=False: name != "decode")
    real = sample.generate
    monkeypatch.setattr(sample, "generate", lambda *a, **k: asked.append(a[1]) or real(*a, **k))
    code, _, err = train("--steps", "2", "--out", str(tmp_path / "m.st"))
    assert code == 0 and len(asked) == 1, err  # two tokens of the trained model, after training
    monkeypatch.setattr(jit, "compiled_on_disk", lambda name="", exact=False: True)
    code, _, err = train("--steps", "2", "--out", str(tmp_path / "n.st"))
    assert code == 0 and len(asked) == 1  # a warm cache: nothing more


def test_the_checkpoint_sniff_reads_no_fifo(tmp_path, model):
    from rnncli.store.checkpoint import looks_like

    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    assert not looks_like(str(fifo))  # (opening it would block, and reading it would steal the text)
    assert looks_like(str(model)) and not looks_like(CORPUS) and not looks_like(str(tmp_path))
