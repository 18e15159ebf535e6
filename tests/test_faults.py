"""Faults from outside: full disks and closed pipes on stdout, numbers out of range, runs too large
for memory, divergence, resuming on other text, a full disk at a save (signals and kills:
test_signals.py)."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rnncli.base.errors import RnncliError
from rnncli.run.train import Trainer
from rnncli.store import validate
from tests.hostile import assert_clean, rnncli_popen, run_cli

ROOT = Path(__file__).resolve().parents[1]
CORPUS = str(ROOT / "sample_corpora" / "forecasts.txt")
OTHER = str(ROOT / "sample_corpora" / "recipes.txt")
TINY = ["--hidden", "16", "--embed", "8", "--batch", "4", "--seq", "8"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "m.safetensors"
    code, _, err = run_cli("train", CORPUS, *TINY, "--steps", "4", "--eval-every", "2", "--out", str(path))
    assert code == 0, err
    return path


def _commands(ckpt, tmp):
    return {
        "generate": ["generate", "-m", str(ckpt), "-n", "2000"],
        "eval": ["eval", "-m", str(ckpt), CORPUS, "--json"],
        "inspect": ["inspect", str(ckpt)],
        "inspect-json": ["inspect", str(ckpt), "--json"],
        "train-json": ["train", CORPUS, *TINY, "--steps", "3", "--json", "--out", str(tmp / "t.safetensors")],
        "help": ["--help"],
    }


@pytest.mark.parametrize("command", ["generate", "eval", "inspect", "inspect-json", "train-json", "help"])
def test_a_full_disk_on_stdout_is_one_line_and_a_closed_pipe_is_silence(ckpt, tmp_path, command):
    argv = _commands(ckpt, tmp_path)[command]
    with open("/dev/full", "w") as full:
        p = rnncli_popen(*argv, stdout=full, stderr=subprocess.PIPE)
        err = p.communicate(timeout=300)[1].decode()
    assert p.returncode == 1 and "Traceback" not in err
    assert err.count("\n") == 1 and "cannot write the output" in err and "No space left" in err
    # (the full-disk run's: train would refuse to replace it)
    (tmp_path / "t.safetensors").unlink(missing_ok=True)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    p = rnncli_popen(*argv, stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    err = p.communicate(timeout=300)[1]
    assert p.returncode == 141 and err == b""
    if command == "train-json":  # the run stopped at its first step and kept it
        assert validate.read(str(tmp_path / "t.safetensors")).meta["progress"]["step"] >= 1


def test_bench_on_a_full_disk(tmp_path):
    with open("/dev/full", "w") as full:
        p = rnncli_popen(
            "bench",
            "-c",
            "small-rnn",
            "--measure",
            "eval",
            "--repeats",
            "1",
            "--json",
            stdout=full,
            stderr=subprocess.PIPE,
        )
        err = p.communicate(timeout=300)[1].decode()
    assert (
        p.returncode == 1
        and "Traceback" not in err
        and err.strip().splitlines()[-1].startswith("rnncli: error: cannot write the output")
    )


@pytest.mark.parametrize(
    "argv,option",
    [
        (["generate", "--rng-seed", "-5"], "--rng-seed"),
        (["generate", "-n", "-1"], "--length"),
        (["generate", "--temperature", "-1"], "--temperature"),
        (["generate", "--temperature", "inf"], "--temperature"),
        (["generate", "--top-k", "-3"], "--top-k"),
        (["generate", "--top-p", "1.5"], "--top-p"),
        (["eval", "--threads", "0", CORPUS], "--threads"),
        (["bench", "--threads", "0"], "--threads"),
        (["bench", "--repeats", "0"], "--repeats"),
        (["train", CORPUS, "--rng-seed", "-5"], "--rng-seed"),
        (["train", CORPUS, "--hidden", "0"], "--hidden"),
        (["train", CORPUS, "--layers", "0"], "--layers"),
        (["train", CORPUS, "--embed", "-2"], "--embed"),
        (["train", CORPUS, "--batch", "0"], "--batch"),
        (["train", CORPUS, "--seq", "0"], "--seq"),
        (["train", CORPUS, "--lr", "nan"], "--lr"),
        (["train", CORPUS, "--lr", "0"], "--lr"),
        (["train", CORPUS, "--clip", "-1"], "--clip"),
        (["train", CORPUS, "--dropout", "1"], "--dropout"),
        (["train", CORPUS, "--steps", "0"], "--steps"),
        (["train", CORPUS, "--epochs", "inf"], "--epochs"),
        (["train", CORPUS, "--time", "-3"], "--time"),
        (["train", CORPUS, "--val-frac", "1"], "--val-frac"),
        (["train", CORPUS, "--eval-every", "0"], "--eval-every"),
        (["train", CORPUS, "--warmup", "-1"], "--warmup"),
        (["train", CORPUS, "--lr-min-frac", "2"], "--lr-min-frac"),
        (["train", CORPUS, "--max-vocab", "0"], "--max-vocab"),
        (["train", CORPUS, "--threads", "0"], "--threads"),
        (["train", "no-such-corpus.txt", "--hidden", "0"], "--hidden"),  # flags before files
    ],
)
def test_every_numeric_option_is_checked_by_name(ckpt, argv, option):
    if argv[0] == "generate":
        argv = argv + ["-m", str(ckpt)]
    code, out, err = run_cli(*argv)
    assert_clean(code, err, allowed=(1, 2))
    assert option in err and out == ""


@pytest.mark.parametrize(
    "flags",
    [
        ["--hidden", "1000000"],
        ["--layers", "200000", "--hidden", "512"],
        ["--batch", "170", "--seq", "1000", "--hidden", "4096"],
    ],
)
def test_a_run_too_large_for_memory_is_refused_before_allocating(tmp_path, flags):
    code, _, err = run_cli("train", CORPUS, *flags, "--out", str(tmp_path / "m.safetensors"))
    assert_clean(code, err, allowed=(1,))
    assert (
        "of memory, more than the" in err and "available" in err and not (tmp_path / "m.safetensors").exists()
    )


def test_divergence_stops_keeps_the_last_good_checkpoint_and_says_what_to_try(tmp_path, monkeypatch):
    out = tmp_path / "m.safetensors"
    with Trainer(
        [CORPUS], dict(hidden=16, embed=8), dict(batch=4, seq=8, steps=10, eval_every=2, out=str(out))
    ) as t:
        real = t.model.loss_and_grads

        def loss_and_grads(*args):
            loss = real(*args)
            return float("nan") if t.step == 4 else loss  # the fifth step's loss

        monkeypatch.setattr(t.model, "loss_and_grads", loss_and_grads)
        with pytest.raises(RnncliError) as e:
            list(t.run())
    message = str(e.value)
    assert "diverged at step 5" in message and "loss became nan" in message
    assert (
        f"{out} keeps the last good state (step 4)" in message and "--lr" in message and "--clip" in message
    )
    contents, tensors = validate.load(str(out), training=True)
    assert contents.meta["progress"]["step"] == 4 and all(np.isfinite(a).all() for a in tensors.values())


def test_divergence_on_the_command_line(tmp_path):
    code, _, err = run_cli(
        "train",
        CORPUS,
        *TINY,
        "--steps",
        "400",
        "--eval-every",
        "100",
        "--lr",
        "1e30",
        "--clip",
        "0",
        "--out",
        str(tmp_path / "m.safetensors"),
    )
    assert code == 1 and "Traceback" not in err
    last = err.strip().splitlines()[-1]  # after the run's opening line
    assert (
        last.startswith("rnncli: error: training diverged")
        and "--lr" in last
        and "clipping (--clip 1)" in last
    )


def test_resume_on_other_text_refuses_unless_asked(ckpt, tmp_path):
    out = tmp_path / "m.safetensors"
    out.write_bytes(ckpt.read_bytes())
    code, _, err = run_cli("train", OTHER, "--resume", str(out), "--steps", "6")
    assert_clean(code, err, allowed=(1,))
    assert "trained on other text" in err and "--allow-new-corpus" in err
    code, _, err = run_cli("train", OTHER, "--resume", str(out), "--steps", "6", "--allow-new-corpus")
    assert code == 0 and "not in the model's vocabulary" in err and "other than the one" in err
    code, _, err = run_cli(
        "train", CORPUS, "--resume", str(ckpt), "--steps", "5", "--out", str(tmp_path / "same.safetensors")
    )
    assert code == 0 and err.count("warning") == 0, err


def test_allow_new_corpus_goes_with_resume(tmp_path):
    code, _, err = run_cli("train", CORPUS, "--allow-new-corpus", "--out", str(tmp_path / "m.safetensors"))
    assert_clean(code, err, allowed=(1,))
    assert "--allow-new-corpus goes with --resume" in err


def test_a_full_disk_at_a_checkpoint_save_keeps_the_last_one_and_resumes_later(tmp_path):
    """A real full file system (a small tmpfs) under --out: one line, exit 1, the previous checkpoint
    byte for byte, no temporary left; with space again, the run resumes."""
    from tests.mounts import fill, tmpfs

    with tmpfs(tmp_path / "disk", "1m") as disk:
        out = disk / "m.safetensors"
        code, _, err = run_cli("train", CORPUS, *TINY, "--steps", "2", "--eval-every", "2", "--out", str(out))
        assert code == 0, err
        before = out.read_bytes()
        filler = fill(disk, leave=8192)  # (room for the lock file's pid, not for a checkpoint)
        code, _, err = run_cli("train", CORPUS, "--resume", str(out), "--steps", "4")
        assert code == 1 and "Traceback" not in err
        assert err.strip().splitlines()[-1] == (
            f"rnncli: error: cannot write checkpoint {out}: No space left on device "
            "(the previous one, if any, is intact)"
        )
        assert out.read_bytes() == before and sorted(p.name for p in disk.iterdir()) == [
            "filler",
            "m.safetensors",
        ]
        filler.unlink()
        code, _, err = run_cli("train", CORPUS, "--resume", str(out), "--steps", "4")
        assert code == 0, err
        assert validate.read(str(out)).meta["progress"]["step"] == 4
