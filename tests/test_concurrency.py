"""Many processes on one cold cache folder: one killed while it writes the compiled kernels, then a
training, eval, generate and inspect --text started together on what it left (the first three compile
and write the same forward kernels at once). Each succeeds with the result it gives alone (on the
warm cache), and a second run finds the cache complete (no notice). One cold compile serves every
check: test_cli's own cold-cache test is folded in here. (A second training in the crowd compiled
every training kernel once more, about two minutes of CPU, and raced the same writes as these.)"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rnncli.store import validate
from tests.hostile import run_cli

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--hidden",
    "16",
    "--embed",
    "8",
    "--batch",
    "4",
    "--seq",
    "8",
    "--rng-seed",
    "3",
    "--recipe",
    "plain",
]


def _start(argv, env):
    return subprocess.Popen(
        [sys.executable, "-m", "rnncli", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_processes_at_once_on_a_cold_cache_one_of_them_killed_while_writing_it(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_bytes((ROOT / "sample_corpora" / "forecasts.txt").read_bytes()[:30000])
    model = tmp_path / "m.safetensors"
    code, _, err = run_cli("train", str(text), *TINY, "--steps", "3", "--out", str(model))
    assert code == 0, err
    commands = {
        "train": [
            "train",
            str(text),
            *TINY,
            "--steps",
            "3",
            "--json",
            "--out",
            str(tmp_path / "train.safetensors"),
        ],
        "eval": ["eval", "-m", str(model), str(text), "--json"],
        "generate": ["generate", "-m", str(model), "-n", "60", "--rng-seed", "5"],
        "inspect": ["inspect", str(model), "--text", str(text), "--json"],
    }
    # (the rules' products: no timing, the same sums in every process)
    warm = dict(os.environ, RNNCLI_TUNE="0")
    cold = dict(warm, RNNCLI_CACHE_DIR=str(tmp_path / "cache"))

    killed = _start(commands["train"], cold)  # killed as the first kernels reach the disk
    deadline = time.monotonic() + 300
    while not list((tmp_path / "cache").glob("kernels-*/*/*.nbc")) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    written = sorted((tmp_path / "cache").glob("kernels-*/*/*.nbc"), key=lambda p: p.stat().st_size)
    assert written, "nothing reached the cache before the kill"
    half = written[-1]  # what a crash of the machine can leave behind an unsynced write
    half.write_bytes(half.read_bytes()[: half.stat().st_size // 2])

    together = {name: _start(argv, cold) for name, argv in commands.items()}
    results = {name: p.communicate(timeout=600) + (p.returncode,) for name, p in together.items()}
    for name, (_out, err, code) in results.items():
        assert code == 0 and b"Traceback" not in err, (name, err.decode())
    assert any(b"damaged compiled kernels" in err for _, err, _ in results.values())  # (whoever met it first)
    assert b"compiling the kernels" in results["generate"][1]  # (the decoder's: no other process compiles it)
    again = subprocess.run(
        [sys.executable, "-m", "rnncli", *commands["generate"]], env=cold, capture_output=True
    )
    assert again.returncode == 0 and again.stderr == b"" and again.stdout == results["generate"][0]
    # (the cache folder only, never the install's)
    assert not list(ROOT.glob("rnncli/**/__pycache__/*.nb[ic]"))
    alone = {}
    for name, argv in commands.items():  # each alone, on the warm cache (the training to a file of its own)
        if name == "train":
            argv = [*argv[:-1], str(tmp_path / "alone.safetensors")]
        run = subprocess.run([sys.executable, "-m", "rnncli", *argv], env=warm, capture_output=True)
        assert run.returncode == 0, (name, run.stderr.decode())
        alone[name] = run.stdout
    for name in ("eval", "generate", "inspect"):
        assert alone[name] == results[name][0], name
    a, b = (validate.load(str(tmp_path / f"{x}.safetensors"))[1] for x in ("train", "alone"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    done = [json.loads(out.splitlines()[-1]) for out in (results["train"][0], alone["train"])]
    assert done[0]["best_val_loss"] == done[1]["best_val_loss"] and done[0]["step"] == 3
