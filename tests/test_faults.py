"""Faults from outside: full disks and closed pipes on stdout, signals, SIGKILL at any moment,
two runs on one checkpoint, stale temporary files, divergence, resuming on other text."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rnncli.base.errors import RnncliError
from rnncli.run.train import Trainer
from rnncli.store import validate
from tests.hostile import assert_clean, run_cli

ROOT = Path(__file__).resolve().parents[1]
CORPUS = str(ROOT / "sample_corpora" / "forecasts.txt")
OTHER = str(ROOT / "sample_corpora" / "recipes.txt")
TINY = ["--hidden", "16", "--embed", "8", "--batch", "4", "--seq", "8"]


def _as_from_a_shell():
    """The stop signals as a shell leaves them to a command it starts: handled by default and not
    blocked, whatever an earlier test left in this worker (a signal ignored or blocked there would
    be ignored or blocked in the child too)."""
    stops = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    for sig in stops:
        signal.signal(sig, signal.SIG_DFL)


def rnncli_popen(*args, **kw):
    kw.setdefault("preexec_fn", _as_from_a_shell)
    return subprocess.Popen([sys.executable, "-m", "rnncli", *args], **kw)


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


@pytest.mark.parametrize("sig,code", [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_a_stop_signal_saves_and_says_how_to_resume(tmp_path, sig, code):
    out = tmp_path / "m.safetensors"
    p = rnncli_popen(
        "train",
        CORPUS,
        *TINY,
        "--steps",
        "100000",
        "--json",
        "--out",
        str(out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = json.loads(p.stdout.readline())
    assert first["event"] == "recipe"  # (the automatic recipe: said once, with the first step)
    assert json.loads(p.stdout.readline())["step"] == 1  # training is under way
    time.sleep(0.3)
    p.send_signal(getattr(signal, sig))
    stdout, stderr = p.communicate(timeout=60)
    err = stderr.decode()
    assert p.returncode == code and "Traceback" not in err
    assert f"stopped by {sig}" in err and f"(continue with `rnncli train {CORPUS} --resume {out}`)" in err
    last = json.loads(stdout.decode().splitlines()[-1])
    info = json.loads(run_cli("inspect", str(out), "--json")[1])
    assert info["progress"]["step"] == last["step"] and info["resumable"]
    assert not list(tmp_path.glob(".*")), "a lock or temporary file was left behind"
    code, stdout, err = run_cli(
        "train", CORPUS, "--resume", str(out), "--steps", str(last["step"] + 2), "--json"
    )
    assert code == 0 and json.loads(stdout.splitlines()[-1])["step"] == last["step"] + 2


def _replaced(path: Path) -> tuple:
    """What changes when a save lands (each renames a new file over the checkpoint)."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


def _kill_loop(tmp_path, kills: int):
    """Start a run that saves at every step and SIGKILL it at start-up, or once it has been seen
    to land 1-3 saves (by polling the checkpoint, so a slow start only makes the wait longer): then
    it is mid-step or mid-save, as the next save follows at once. The checkpoint on disk must always
    be a whole, valid one, at a step that only moves on, and on past every save seen."""
    out = tmp_path / "m.safetensors"
    code, _, err = run_cli(
        "train", CORPUS, "--hidden", "192", "--batch", "8", "--seq", "16", "--steps", "1", "--out", str(out)
    )
    assert code == 0, err
    rng, steps = random.Random(7), [1]
    for i in range(kills):
        saves = rng.choice((0, 1, 2, 3)) if i else 1  # 0: at start-up
        seen, last = 0, _replaced(out)
        with open(tmp_path / "stderr.txt", "w") as err:
            p = rnncli_popen(
                "train",
                CORPUS,
                "--resume",
                str(out),
                "--steps",
                "1000000",
                "--eval-every",
                "1",
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        if saves == 0:
            time.sleep(rng.uniform(0.0, 0.5))  # (only picks the moment: the test holds whenever it comes)
        deadline = time.monotonic() + 300
        while seen < saves:
            assert p.poll() is None, f"the run ended: {(tmp_path / 'stderr.txt').read_text()[-500:]}"
            assert time.monotonic() < deadline, "no save in 300 s"
            now = _replaced(out)
            seen, last = seen + (now != last), now
            time.sleep(0.001)
        p.kill()
        p.wait()
        contents, tensors = validate.load(str(out), training=True)  # raises if damaged in any way
        steps.append(contents.meta["progress"]["step"])
        assert steps[-1] >= steps[-2] + (saves > 0), (saves, steps)
    code, _, err = run_cli("train", CORPUS, "--resume", str(out), "--steps", str(steps[-1] + 1))
    assert code == 0, err
    assert not list(tmp_path.glob(".m.safetensors.*")), "stale temporary or lock files remain"
    return steps


def test_sigkill_at_random_moments_leaves_a_valid_checkpoint(tmp_path):
    _kill_loop(tmp_path, 3)


@pytest.mark.slow
def test_sigkill_twenty_times_leaves_a_valid_checkpoint(tmp_path):
    _kill_loop(tmp_path, 20)


def test_stale_temporaries_are_removed_by_the_next_run(tmp_path):
    """Only the run holding the lock writes a path, so any temporary beside it is a dead run's."""
    out = tmp_path / "m.safetensors"
    stale = [
        tmp_path / ".m.safetensors.tmp999999",
        tmp_path / f".m.safetensors.tmp{os.getpid()}",
        tmp_path / ".m.safetensors.tmp\u00b2",
    ]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    (tmp_path / ".other.safetensors.tmp1").write_bytes(b"not ours")
    code, _, err = run_cli("train", CORPUS, *TINY, "--steps", "2", "--out", str(out))
    assert code == 0, err
    assert not any(path.exists() for path in stale) and (tmp_path / ".other.safetensors.tmp1").exists()


def test_a_second_run_on_the_same_checkpoint_refuses(tmp_path):
    out = tmp_path / "m.safetensors"
    first = rnncli_popen(
        "train",
        CORPUS,
        *TINY,
        "--steps",
        "100000",
        "--json",
        "--out",
        str(out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        first.stdout.readline()
        code, _, err = run_cli("train", CORPUS, *TINY, "--steps", "2", "--out", str(out))
        assert_clean(code, err, allowed=(1,))
        assert f"another rnncli run (pid {first.pid}) is writing {out}" in err
        code, _, err = run_cli("train", CORPUS, "--resume", str(out), "--steps", "100000")  # nor resume it
        assert code == 1 and "another rnncli run" in err
    finally:
        first.terminate()
        first.communicate(timeout=60)
    assert first.returncode == 143
    assert "another rnncli run" not in run_cli("inspect", str(out))[2]
    code, _, err = run_cli("train", CORPUS, "--resume", str(out), "--steps", "100000", "--time", "1")
    assert code == 0, err  # the lock went with the first run


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


def test_a_signal_ignored_at_start_stays_ignored(tmp_path):
    """Under nohup (SIGHUP ignored) a hang-up must not stop the run."""
    out = tmp_path / "m.safetensors"
    p = rnncli_popen(
        "train",
        CORPUS,
        *TINY,
        "--steps",
        "100000",
        "--json",
        "--out",
        str(out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )
    p.stdout.readline()
    p.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert p.poll() is None  # still training
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)
    assert p.returncode == 143


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
