"""Processes at once on one cold cache folder (tests/crowd.py): one killed while it writes the
compiled kernels, then a training, an eval and a generate started together on what it left. Each
succeeds with the result it gives alone (on the warm cache), and a second run finds the cache
complete (no notice). One cold compile serves every check: on CI's cold cache it is the session's
warm-up, whose results this test reads; test_cli's own cold-cache test is folded in here."""

import json
import os
import subprocess
import sys

from rnncli.store import validate
from tests import crowd

ROOT = crowd.ROOT


def test_processes_at_once_on_a_cold_cache_one_of_them_killed_while_writing_it(tmp_path):
    env = dict(os.environ, RNNCLI_TUNE="0")
    got = crowd.recorded()  # (the session's warm-up ran it, on the cache the workers share)
    if got is None:
        env["RNNCLI_CACHE_DIR"] = str(tmp_path / "cache")
        (tmp_path / "crowd").mkdir()
        got = crowd.run(tmp_path / "crowd", env)
    assert got["written"], "nothing reached the cache before the kill"
    for name in crowd.NAMES:
        _out, err, code = got[name]
        assert code == 0 and b"Traceback" not in err, (name, err.decode())
    assert any(b"damaged compiled kernels" in got[name][1] for name in crowd.NAMES)  # (whoever met it first)
    assert b"compiling the kernels" in got["generate"][1]  # (the decoder's: no other process compiles it)
    out, err, code = got["again"]
    assert code == 0 and err == b"" and out == got["generate"][0]
    # (the cache folder only, never the install's)
    assert not list(ROOT.glob("rnncli/**/__pycache__/*.nb[ic]"))
    alone = {}
    # each alone, on the cache the crowd left (warm), the training to a file of its own
    for name, argv in crowd.commands(tmp_path, "alone.safetensors").items():
        run = subprocess.run([sys.executable, "-m", "rnncli", *argv], env=env, capture_output=True)
        assert run.returncode == 0, (name, run.stderr.decode())
        alone[name] = run.stdout
    for name in ("eval", "generate"):
        assert alone[name] == got[name][0], name
    trained = (got["folder"] / "train.safetensors", tmp_path / "alone.safetensors")
    a, b = (validate.load(str(path))[1] for path in trained)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    done = [json.loads(out.splitlines()[-1]) for out in (got["train"][0], alone["train"])]
    assert done[0]["best_val_loss"] == done[1]["best_val_loss"] and done[0]["step"] == 3
