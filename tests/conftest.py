"""Tests marked `slow` (long fault-injection loops) run only with `pytest --run-slow`. Under xdist:
the kernels compiled once before the workers start, and the order in which tests are handed out,
so that the two workers of `-n 2` end together."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from tests import crowd

ROOT = Path(__file__).resolve().parents[1]
# Two test workers share two cores, each process with two kernel threads: waiting threads sleep
# instead of spinning (libgomp's default) on a core the other worker needs: 11-24% off the wall time
# of test_distributed, test_cli and test_signals on 2 Zen 3 cores; the sums are the same. (Before any kernel
# runs, so the processes the tests start inherit it.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Long files handed out first. xdist hands out whole files, by default those with the most tests
# first, so test_concurrency (one test, minutes of cold compiles in several processes) came last,
# with the other worker idle. Not test_walkthrough: its trainings get a 4-second budget that the
# automatic recipe refuses (too few steps) when test_concurrency's compiles share the cores with it.
LONG_FIRST = ("test_concurrency.py",)
CROWD = pytest.StashKey[Path]()  # (the folder of the crowd's results, removed at the end)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run the tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long loops (20 SIGKILLs); run with --run-slow")
    if hasattr(config.option, "loadscopereorder"):  # (xdist's sort by number of tests: ours instead)
        config.option.loadscopereorder = False
    if getattr(config.option, "maxschedchunk", 0) is None:
        # --dist load (the simulator's run): tests one or two at a time, not a quarter of each worker's
        # share up front, which gave one worker all of test_backend.py's long tests at the start
        config.option.maxschedchunk = 1


def pytest_sessionstart(session):
    """Under xdist, before the workers start: the kernels that most tests use compiled into the disk
    cache the workers share. (On a cold cache, CI's, each worker compiled them itself, both the same
    ones at the same time.) There, test_concurrency's crowd of processes (tests/crowd.py) compiles
    them, its results kept for the test, which would otherwise compile them all once more on a
    cache of its own; inspection's and several streams' kernels then compile on the core the
    crowd's generate leaves to its training. On a warm cache, _warm_up's commands compile what is
    missing, two processes at once. A failure here is left to the tests to report."""
    config = session.config
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":  # the simulator's run: few CPU kernels, cached by
        return  # CI's main run before it (alone on a cold cache, its workers compile what they use)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}  # (the CPU's kernels)
    env["RNNCLI_TUNE"] = "0"  # (no timing: which product path runs does not change what compiles)
    with tempfile.TemporaryDirectory() as tmp:
        groups = _warm_up(tmp)
        try:
            if not any(crowd.kernel_cache(env).glob("**/*.nbi")):
                folder = Path(tempfile.mkdtemp(prefix="rnncli-crowd-"))
                config.stash[CROWD] = folder
                # (the crowd compiles training's, scoring's and one stream's kernels: not these)
                crowd.run(folder, env, then=[groups[0][-1], groups[1][-1]])
                os.environ[crowd.RECORD] = str(folder)  # (the workers, started after this, inherit it)
                return
        except (OSError, subprocess.SubprocessError):
            pass

        def run(group):
            for argv in group:
                cmd = [sys.executable, "-m", "rnncli", *argv]
                subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, timeout=900)

        threads = [threading.Thread(target=run, args=(group,)) for group in groups]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def pytest_sessionfinish(session):
    folder = session.config.stash.get(CROWD, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _warm_up(tmp):
    """The warm-up's commands in two groups, each run in order by a process of its own: training's,
    scoring's and inspection's kernels in one, generation's in the other (one stream, then
    several: the decoder's two signatures)."""
    golden = ROOT / "tests" / "fixtures" / "golden"
    model, text, cpu = str(Path(tmp) / "m.safetensors"), str(golden / "corpus.txt"), ("--device", "cpu")
    small = ("--hidden", "8", "--embed", "4", "--batch", "2", "--seq", "8", "--recipe", "plain")
    gru = str(golden / "char_gru.safetensors")
    return [
        [
            ("train", text, *small, "--steps", "2", "--eval-every", "1", *cpu, "--out", model),
            ("eval", "-m", model, text, *cpu),
            ("inspect", gru, "--text", text, *cpu),
        ],
        [("generate", "-m", gru, "-n", "20", *cpu), ("generate", "-m", gru, "-n", "20", "-N", "2", *cpu)],
    ]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # (stable: the rest keep their order)
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
