"""Data-parallel training under `mpiexec -n N`: the same losses as one process (N = 2 and 4, the same
global batch and seed), a run saved under N ranks resumed under M, one-line errors, a signal that
stops every rank at the same step. Needs `pip install -e ".[mpi]"` (mpi4py, MPICH): CI installs it."""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from rnncli.store import checkpoint
from tests.hostile import run_cli

MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
try:
    import mpi4py  # noqa: F401
except ImportError:
    mpi4py = None
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or mpi4py is None, reason="no MPI here: pip install -e '.[mpi]' (CI installs it)"
)

CORPUS = os.path.join(os.path.dirname(__file__), "..", "sample_corpora", "forecasts.txt")
SMALL = [
    "--hidden",
    "24",
    "--layers",
    "2",
    "--embed",
    "8",
    "--batch",
    "8",
    "--seq",
    "12",
    "--eval-every",
    "20",
    "--threads",
    "1",
    "--rng-seed",
    "3",
    "--recipe",
    "plain",
]


def train(tmp_path, ranks: int, out: str, *args: str) -> list[dict]:
    """The step events of `rnncli train` under `mpiexec -n ranks` (ranks 0: one plain process)."""
    # a resumed run keeps its own (but for these)
    settings = SMALL if "--resume" not in args else SMALL[10:14]
    argv = [
        sys.executable,
        "-m",
        "rnncli",
        "train",
        CORPUS,
        *settings,
        "--out",
        str(tmp_path / out),
        "--json",
        *args,
    ]
    if ranks:
        argv = [MPIEXEC, "-n", str(ranks)] + argv
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]
    return [e for e in events if e["event"] == "step"]


def losses(events, key="train_loss"):
    return np.array([e[key] for e in events if e.get(key) is not None])


@needs_mpi
@pytest.mark.parametrize("dropout", ["0", "0.3"])
def test_two_and_four_ranks_train_as_one_process_does(tmp_path, dropout):
    one = train(tmp_path, 0, "one.st", "--steps", "50", "--dropout", dropout)
    for ranks in (2, 4):
        many = train(tmp_path, ranks, f"r{ranks}.st", "--steps", "50", "--dropout", dropout)
        assert len(many) == 50
        np.testing.assert_allclose(losses(many), losses(one), rtol=1e-4)
        np.testing.assert_allclose(losses(many, "val_loss"), losses(one, "val_loss"), rtol=1e-4)
        with checkpoint.Reader(tmp_path / "one.st") as a, checkpoint.Reader(tmp_path / f"r{ranks}.st") as b:
            names = [n for n in a.table if not n.startswith("optimizer.")]
            for name, x, y in zip(names, a.tensors(names).values(), b.tensors(names).values()):
                np.testing.assert_allclose(y, x, atol=1e-4, err_msg=name)


@needs_mpi
def test_a_run_saved_under_two_ranks_resumes_under_one_and_under_four(tmp_path):
    one = train(tmp_path, 0, "one.st", "--steps", "40")
    first = train(tmp_path, 2, "two.st", "--steps", "20")
    shutil.copy(tmp_path / "two.st", tmp_path / "again.st")
    rest_solo = train(tmp_path, 0, "two.st", "--resume", str(tmp_path / "two.st"), "--steps", "40")
    rest_four = train(tmp_path, 4, "again.st", "--resume", str(tmp_path / "again.st"), "--steps", "40")
    np.testing.assert_allclose(losses(first + rest_solo), losses(one), rtol=1e-4)
    np.testing.assert_allclose(losses(first + rest_four), losses(one), rtol=1e-4)


@needs_mpi
def test_errors_are_one_line_and_end_every_rank(tmp_path):
    argv = [
        MPIEXEC,
        "-n",
        "3",
        sys.executable,
        "-m",
        "rnncli",
        "train",
        CORPUS,
        "--batch",
        "2",
        "--out",
        str(tmp_path / "x.st"),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    ours = [line for line in done.stderr.splitlines() if line.startswith("rnncli:")]
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert ours and all("fewer streams than the 3 ranks" in line for line in ours)


@needs_mpi
def test_a_signal_stops_all_ranks_after_the_same_step_and_saves(tmp_path):
    out = tmp_path / "sig.st"
    argv = [
        MPIEXEC,
        "-n",
        "2",
        sys.executable,
        "-m",
        "rnncli",
        "train",
        CORPUS,
        *SMALL,
        "--steps",
        "100000",
        "--out",
        str(out),
        "--json",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    for _ in range(30):  # the first steps
        assert json.loads(proc.stdout.readline())["event"] == "step"
    proc.send_signal(signal.SIGINT)  # mpiexec passes it on to the ranks
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert "Traceback" not in err
    code, info, _ = run_cli("inspect", str(out), "--json")
    step = json.loads(info)["progress"]["step"]
    assert code == 0 and 30 <= step < 100000
    again = train(tmp_path, 2, "sig.st", "--resume", str(out), "--steps", str(step + 3))
    assert [e["step"] for e in again] == [step + 1, step + 2, step + 3]


def test_under_mpiexec_without_mpi4py_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    code, _, err = run_cli("train", CORPUS, "--steps", "1", "--out", str(tmp_path / "x.st"))
    assert code == 1 and "rnncli[mpi]" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("train", CORPUS, "--steps", "1", "--out", str(tmp_path / "x.st"), "--distributed")
    assert code == 1 and "rnncli[mpi]" in err
    monkeypatch.delenv("PMI_SIZE")
    # no MPI job was joined: a plain run still works
    code, _, err = run_cli("train", CORPUS, *SMALL, "--steps", "2", "--out", str(tmp_path / "y.st"))
    assert code == 0, err


@needs_mpi
def test_early_stopping_is_decided_alike_on_every_rank(tmp_path):
    """--patience goes by the lead's validation, shared with every rank: they stop together, where one
    process stops."""
    args = ("--steps", "200", "--eval-every", "2", "--patience", "1", "--lr", "0.05")
    one = train(tmp_path, 0, "one.st", *args)
    two = train(tmp_path, 2, "two.st", *args)
    assert len(two) == len(one) < 200
    np.testing.assert_allclose(losses(two), losses(one), rtol=1e-4)


@needs_mpi
def test_a_launcher_of_another_mpi_is_named_not_run_n_times(tmp_path):
    """Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; the MPICH that mpi4py uses then sees each process
    alone."""
    env = dict(os.environ, OMPI_COMM_WORLD_SIZE="2")
    argv = [sys.executable, "-m", "rnncli", "train", CORPUS, "--steps", "1", "--out", str(tmp_path / "x.st")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1 and "MPI sees each alone" in done.stderr and "Traceback" not in done.stderr


@needs_mpi
def test_the_automatic_recipe_under_two_ranks_measures_together_and_agrees(tmp_path):
    """Both ranks time the probe at once; the lead's rate (times the ranks) settles one recipe that
    the lead alone prints; then both train it."""
    argv = [
        MPIEXEC,
        "-n",
        "2",
        sys.executable,
        "-m",
        "rnncli",
        "train",
        CORPUS,
        "--threads",
        "1",
        "--out",
        str(tmp_path / "a.st"),
    ]
    done = subprocess.run(argv + ["--time", "30", "--plan"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("recipe (auto): gru 2x") == 1 and "why: 30 s at " in done.stdout
    done = subprocess.run(
        argv + ["--steps", "4", "--hidden", "16", "--json"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["event"] == "recipe" and events[-1]["event"] == "done" and events[-1]["step"] == 4
