"""--device: cpu, cuda, auto. Without a GPU, asking for CUDA is one clear line; the CPU path never
imports numba.cuda (importing it costs CPU users time for nothing)."""

import os
import subprocess
import sys

import pytest

from rnncli.kernels import device
from tests.hostile import assert_clean, run_cli
from tests.test_cli import CORPUS, TINY

NO_GPU = device.cuda_unusable() is not None and os.environ.get("NUMBA_ENABLE_CUDASIM") != "1"


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
@pytest.mark.parametrize("command", ["train", "eval", "generate", "bench"])
def test_cuda_without_a_gpu_is_one_line(command, tmp_path):
    argv = {
        "train": ["train", CORPUS, *TINY, "--steps", "2", "--out", str(tmp_path / "m.safetensors")],
        "eval": ["eval", CORPUS, "--model", str(tmp_path / "none.safetensors")],
        "generate": ["generate", "--model", str(tmp_path / "none.safetensors")],
        "bench": ["bench", "-c", "small-rnn", "--repeats", "1"],
    }[command]
    code, out, err = run_cli(*argv, "--device", "cuda")
    assert_clean(code, err)
    assert code == 1 and out == ""
    assert "--device cuda:" in err and ("no CUDA GPU" in err or "numba-cuda is not installed" in err)
    assert not (tmp_path / "m.safetensors").exists()


def test_an_unknown_device_is_named():
    code, _, err = run_cli("train", CORPUS, "--device", "gpu", "--steps", "1")
    assert_clean(code, err)
    assert code == 1 and "unknown --device 'gpu'" in err


SCRIPT = """
import sys
from rnncli.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("numba.cuda" in sys.modules, "numba" in sys.modules, file=sys.stderr)
"""


@pytest.mark.skipif(not NO_GPU, reason="on a GPU machine auto picks CUDA")
@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["train", "--help"],
        ["inspect", "{ckpt}"],
        ["train", CORPUS, *TINY, "--steps", "2", "--out", "{ckpt}"],
        ["eval", CORPUS, "--model", "{ckpt}"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_the_cpu_path_never_imports_numba_cuda(argv, trained_checkpoint):
    argv = [a.format(ckpt=trained_checkpoint) for a in argv]
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *argv], capture_output=True, text=True, env=env, timeout=600
    )
    cuda_loaded, numba_loaded = done.stderr.strip().splitlines()[-1].split()
    assert cuda_loaded == "False", done.stderr
    if argv[0] in ("--help", "inspect") or "--help" in argv:
        assert numba_loaded == "False"


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("device") / "m.safetensors"
    code, _, err = run_cli("train", CORPUS, *TINY, "--steps", "2", "--out", str(path), "--device", "cpu")
    assert code == 0, err
    return str(path)
