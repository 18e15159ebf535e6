"""The crowd test_concurrency checks: several rnncli processes on one cold kernel cache at once, after
one was killed while it wrote the cache and the largest file it left was cut in half (what a crash
of the machine can leave behind an unsynced write). A training, an eval and a generate then start
together: the first two compile and write the same forward kernels at once, the third the decoder.
(An inspect --text in the crowd compiled the forward kernels a third time, about a minute of CPU,
and raced the same writes; a second training would have compiled every training kernel again.)

The crowd compiles every kernel most tests use, so on a cold cache (CI's) it is the session's
warm-up (conftest.py), on the cache the workers then share, and its results wait in a folder named
by $RNNCLI_TEST_CROWD for test_concurrency to check: a cold compile costs minutes of CPU, and the
crowd and the warm-up were two of them. On a warm cache the test runs the crowd itself, on a cache
folder of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden"
RECORD = "RNNCLI_TEST_CROWD"  # (the folder the warm-up left the crowd's results in)
TINY = "--hidden 16 --embed 8 --batch 4 --seq 8 --rng-seed 3 --recipe plain".split()
NAMES = ("train", "eval", "generate")


def commands(folder: Path, out: str = "train.safetensors") -> dict[str, list[str]]:
    """Each member's argv: a 3-step training of its own into folder/out, and the golden GRU scored on
    the golden corpus and sampled from."""
    text, model = str(GOLDEN / "corpus.txt"), str(GOLDEN / "char_gru.safetensors")
    return {
        "train": [
            "train",
            text,
            *TINY,
            "--steps",
            "3",
            "--json",
            "--out",
            str(folder / out),
        ],
        "eval": ["eval", "-m", model, text, "--json"],
        "generate": ["generate", "-m", model, "-n", "60", "--rng-seed", "5"],
    }


def rnncli(argv: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rnncli", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def run(folder: Path, env: dict, then: tuple = ()) -> dict:
    """Run the crowd on env's kernel cache (cold: nothing in it yet), writing into folder; returns
    and records there what recorded() returns. env: with RNNCLI_TUNE=0 (the rules' products: no
    timing, the same sums in every process). then: more rnncli argvs (their results unchecked), run
    one by one once the generate is done, on the core its compile leaves to the training's."""
    cache = kernel_cache(env)
    killed = rnncli(commands(folder, "killed.safetensors")["train"], env)  # killed as the first kernels land
    deadline = time.monotonic() + 300
    while not list(cache.glob("**/*.nbc")) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    written = sorted(cache.glob("**/*.nbc"), key=lambda p: p.stat().st_size)
    if written:
        half = written[-1]
        half.write_bytes(half.read_bytes()[: half.stat().st_size // 2])
    together = {name: rnncli(argv, env) for name, argv in commands(folder).items()}
    ends = {}

    def end(name, p):
        ends[name] = p.communicate(timeout=900) + (p.returncode,)

    end("generate", together["generate"])
    end("again", rnncli(commands(folder)["generate"], env))  # (a second generate: the decoder is on disk)
    for argv in then:
        rnncli(list(argv), env).communicate(timeout=900)
    for name in ("train", "eval"):
        end(name, together[name])
    codes = {name: result[2] for name, result in ends.items()}
    for name, (out, err, _) in ends.items():
        (folder / f"{name}.out").write_bytes(out)
        (folder / f"{name}.err").write_bytes(err)
    facts = {"written": len(written), "codes": codes}
    (folder / "crowd.json").write_text(json.dumps(facts))
    return recorded(folder)


def recorded(folder: Path | None = None) -> dict | None:
    """The crowd's results in folder (else in $RNNCLI_TEST_CROWD's, if the warm-up ran it): {"written":
    files on disk at the kill, "folder": folder, name: (stdout, stderr, exit status) for each member
    and for "again", a generate run once the first is done}; None if there are none."""
    folder = folder or (Path(os.environ[RECORD]) if os.environ.get(RECORD) else None)
    if folder is None or not (folder / "crowd.json").is_file():
        return None
    facts = json.loads((folder / "crowd.json").read_text())
    ends = {
        n: ((folder / f"{n}.out").read_bytes(), (folder / f"{n}.err").read_bytes(), code)
        for n, code in facts["codes"].items()
    }
    return {"written": facts["written"], "folder": folder, **ends}


def kernel_cache(env: dict) -> Path:
    """The kernel folder of the rnncli processes started with env."""
    code = "import numba, rnncli.kernels.jit; print(numba.config.CACHE_DIR)"
    found = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return Path(found.stdout.strip())
