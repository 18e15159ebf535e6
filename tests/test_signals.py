"""A run stopped from outside: stop signals save and say how to go on, SIGKILL at any moment leaves a
valid checkpoint, a dead run's temporaries are cleared, a second run on the same checkpoint refuses,
and a signal ignored at start stays ignored."""

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from rnncli.store import validate
from tests.hostile import assert_clean, rnncli_popen, run_cli

ROOT = Path(__file__).resolve().parents[1]
CORPUS = str(ROOT / "sample_corpora" / "forecasts.txt")
TINY = ["--hidden", "16", "--embed", "8", "--batch", "4", "--seq", "8"]


def _long_run(out: Path, **kw) -> subprocess.Popen:
    """A training of a tiny model far longer than the test, a JSON line a step on its stdout."""
    args = ("train", CORPUS, *TINY, "--steps", "100000", "--json", "--out", str(out))
    return rnncli_popen(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.mark.parametrize("sig,code", [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_a_stop_signal_saves_and_says_how_to_resume(tmp_path, sig, code):
    out = tmp_path / "m.safetensors"
    p = _long_run(out)
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
    first = _long_run(out)
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


def test_a_signal_ignored_at_start_stays_ignored(tmp_path):
    """Under nohup (SIGHUP ignored) a hang-up must not stop the run: two more steps come after it (a
    handled stop signal ends the run after the step under way)."""
    out = tmp_path / "m.safetensors"
    p = _long_run(out, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    p.stdout.readline()
    assert json.loads(p.stdout.readline())["step"] == 1  # training is under way
    p.send_signal(signal.SIGHUP)
    after = [json.loads(p.stdout.readline()).get("step") for _ in range(2)]
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)
    assert p.returncode == 143 and after[1] == after[0] + 1 >= 3, after  # still training after the hang-up
