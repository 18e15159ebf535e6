"""Property: whatever is done to a real checkpoint (bytes of its header or data, JSON values of its
metadata with checksums recomputed, tensor shapes and offsets), every command that reads it ends
in success or in one clear line; never a traceback, a crash or a hang.

CI runs a fixed, derandomized set of examples; RNNCLI_FUZZ_EXAMPLES=2000 runs more."""
import copy
import faulthandler
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnncli.train import Trainer
from tests.hostile import assert_clean, put_together, run_cli, take_apart

TEXT = b"Monday: rain at first, then sun. Tuesday: wind from the west, cooler.\n" * 40
EXAMPLES = int(os.environ.get("RNNCLI_FUZZ_EXAMPLES", "120"))
DELETE = object()


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Two real checkpoints: a char LSTM and a word GRU, both resumable."""
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "corpus.txt").write_bytes(TEXT)
    out = {}
    for name, model, tokenizer in [("char", dict(cell="lstm"), "char"), ("word", dict(cell="gru", layers=1), "word")]:
        path = folder / f"{name}.safetensors"
        with Trainer([str(folder / "corpus.txt")], dict(model, hidden=8, embed=4),
                     dict(batch=3, seq=6, steps=3, eval_every=2, tokenizer=tokenizer, out=str(path))) as t:
            list(t.run())
        out[name] = (path, path.read_bytes(), take_apart(path))
    return Bases(folder, out)


class Bases(tuple):
    """(folder, {name: (path, bytes, parts)}), with a short repr for hypothesis's reports."""

    def __new__(cls, folder, files):
        return super().__new__(cls, (folder, files))

    def __repr__(self):
        return f"Bases({self[0]})"


def leaf_paths(value, prefix=()):
    """Paths to the values inside decoded metadata (long lists: their first few items)."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = list(enumerate(value))[:4]
    else:
        return [prefix]
    paths = [prefix]
    for key, v in items:
        paths += leaf_paths(v, prefix + (key,))
    return paths


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 300) | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=4) | st.just(DELETE),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=4,
)

mutations = st.one_of(
    st.tuples(st.just("bytes"), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                                         min_size=1, max_size=3)),
    st.tuples(st.just("cut"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("meta"), st.integers(0, 10**6), json_values),
    st.tuples(st.just("table"), st.integers(0, 10**6), st.sampled_from(["dtype", "shape", "data_offsets"]), json_values),
)


def _set(root, path, value):
    *parents, last = path
    for key in parents:
        root = root[key]
    if value is DELETE:
        del root[last]
    else:
        root[last] = value


def mutate(blob: bytes, parts, mutation) -> tuple[bytes | None, tuple]:
    kind = mutation[0]
    if kind == "bytes":
        data = bytearray(blob)
        for where, value in mutation[1]:
            data[int(where * len(data))] = value
        return bytes(data), ()
    if kind == "cut":
        return blob[: int(mutation[1] * len(blob))], ()
    table, meta, data = copy.deepcopy(parts)
    if kind == "meta":
        paths = [p for p in leaf_paths(meta) if p and p[0] != "checksums"]
        _set(meta, paths[mutation[1] % len(paths)], mutation[2])
    else:
        name = sorted(table)[mutation[1] % len(table)]
        _set(table, (name, mutation[2]), mutation[3])
    return None, (table, meta, data)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(which=st.sampled_from(["char", "word"]), mutation=mutations)
def test_mutated_checkpoints_end_in_success_or_one_line(bases, which, mutation):
    folder, base = bases
    path, blob, parts = base[which]
    bad = folder / "mutated.safetensors"
    raw, rebuilt = mutate(blob, parts, mutation)
    try:
        put_together(bad, *rebuilt) if rebuilt else bad.write_bytes(raw)
    except (TypeError, ValueError):  # json cannot write this value (say, a NaN key): nothing to read
        return
    faulthandler.dump_traceback_later(120, exit=True)  # a hang fails the run loudly
    try:
        for argv in (["inspect", str(bad)], ["inspect", str(bad), "--json"],
                     ["generate", "-m", str(bad), "-n", "8", "--rng-seed", "3"],
                     ["eval", "-m", str(bad), "-"],
                     ["train", "-", "--resume", str(bad), "--steps", "5", "--out", str(folder / "resumed.safetensors")]):
            code, _, err = run_cli(*argv, stdin=TEXT)
            assert_clean(code, err)
    finally:
        faulthandler.cancel_dump_traceback_later()
