"""Tests marked `slow` (long fault-injection loops) run only with `pytest --run-slow`. Under xdist:
the kernels compiled once before the workers start, and the order in which tests are handed out,
so that the two workers of `-n 2` end together."""

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

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
    cache the workers share, by two processes at once (training's, scoring's and inspection's in one,
    generation's in the other). On a cold cache (CI's) each worker compiled them itself, both the
    same ones at the same time. A failure here is left to the tests to report."""
    config = session.config
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":  # the simulator's run: few CPU kernels, cached by
        return  # CI's main run before it (alone on a cold cache, its workers compile what they use)
    golden = ROOT / "tests" / "fixtures" / "golden"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}  # (the CPU's kernels)
    env["RNNCLI_TUNE"] = "0"  # (no timing: which product path runs does not change what compiles)
    with tempfile.TemporaryDirectory() as tmp:
        model = str(Path(tmp) / "m.safetensors")
        text, cpu = str(golden / "corpus.txt"), ("--device", "cpu")
        small = ("--hidden", "8", "--embed", "4", "--batch", "2", "--seq", "8", "--recipe", "plain")
        groups = [
            [
                ("train", text, *small, "--steps", "2", "--eval-every", "1", *cpu, "--out", model),
                ("eval", "-m", model, text, *cpu),
                ("inspect", model, "--text", text, *cpu),
            ],
            [  # (one stream, then several: the decoder's two signatures)
                ("generate", "-m", str(golden / "char_gru.safetensors"), "-n", "20", *cpu),
                ("generate", "-m", str(golden / "char_gru.safetensors"), "-n", "20", "-N", "2", *cpu),
            ],
        ]

        def run(group):
            for argv in group:
                cmd = [sys.executable, "-m", "rnncli", *argv]
                subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, timeout=900)

        threads = [threading.Thread(target=run, args=(group,)) for group in groups]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # (stable: the rest keep their order)
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
