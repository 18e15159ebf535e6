"""Measured, not assumed: which path each recurrent product takes on this CPU.

The recurrent product of a step, C (M, N) = A (M, K) @ W.T with M the rows one thread owns, can go
five ways (kernels/cpu/gemm.py PATHS): BLAS, our dot-product kernel with tiles of 8 or 4 rows of W,
our row-building kernel, or, in a layer's time loop, our outer-product kernel on W packed once
(packed.py; the column split of large weights chooses between it and BLAS, keys ending in
",cols"). Which is fastest depends on the shape and on the CPU (its vector width, its registers,
its caches). The first time a shape is met on a machine, each path is timed as the
sequence drivers run it (every thread on its own rows at once; about 0.1 s a shape, silently: a first
run says it is compiling and timing the kernels) and the fastest is kept in
`tune.json` beside the compiled kernels, keyed by the CPU's model and vector features; later runs
read it. Generation's products are timed apart (keys ending in "w"): a step goes through all its
weight matrices in turn, which then share the caches, where a layer's time loop rereads one; on a
Zen 2 that turned a 4-row-tile win into a 5-8% loss against BLAS. A file for another CPU, or one
that cannot be read, is measured afresh (with a note).
`RNNCLI_TUNE=0` (`--no-tune`) uses gemm.rule, the bounds measured on a Zen 4; `rnncli bench --tune`
deletes the file, so that every shape is measured again.

No printing: `notes` receives what people should hear (the CLI prints it on stderr).
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from rnncli.base import paths
from rnncli.base.paths import cache_root

# 2: BLAS through NumPy's OpenBLAS (kernels/cpu/blas.py), whose timings differ; 3: the paths timed in
# turns (ROUNDS): files made before hold choices biased against BLAS, measured first; 4: the packed
# path (kernels/cpu/packed.py), which files made before never measured
FORMAT = 4
SMALL = 1 << 14  # shapes with fewer weights (N x K) take the rule: too quick to time, too quick to matter
# (16,384 weights, the small rnn's W_hh, is timed: its time loops ran 1.15x faster packed than by BLAS)
MARGIN = 0.05  # a path must beat the rule's, and BLAS, by this share to be chosen (the rest is noise)
TARGET_S = 0.004  # seconds one timing aims at
# Timings per path, taken in turns: timed one path after the other, BLAS (the first) ran 3-9x
# slower than its own later runs in a fresh process on a Zen 3 (6-13 ms against 1.5 ms), and the
# choice for small-gru's batched generation came out cols, rows4 or BLAS run to run: 122-230k
# characters/s. In turns, each path's best comes from the rounds after the process has settled.
ROUNDS = 3
WEIGHT_BYTES = (
    48 << 20
)  # at most this much in weight matrices taken in turn (beyond, all miss the caches alike)
clock = time.perf_counter  # (tests replace it)
notes = None  # callable(str) or None: told about a tuning file that is bad or another CPU's (configured())
_enabled = True  # whether new shapes are measured, as configured() says for the call under way

_table: dict | None = None  # shape key -> path name, this CPU's


def enabled() -> bool:
    """Whether new shapes are measured (RNNCLI_TUNE=0: the rule only)."""
    return _enabled and os.environ.get("RNNCLI_TUNE", "1") != "0"


@contextlib.contextmanager
def configured(enabled: bool, notes_to=None):
    """For one call (run.options.RunOptions.applied): measure new shapes or take the rule (enabled),
    and tell `notes_to` about the tuning file and the caches; as before afterwards."""
    global _enabled, notes
    saved = _enabled, notes, paths.notes
    _enabled, notes, paths.notes = enabled, notes_to, notes_to
    try:
        yield
    finally:
        _enabled, notes, paths.notes = saved


def cpu_key() -> str:
    """The CPU's model (with family and model numbers) and the vector features that decide the kernels."""
    from rnncli.base.machine import cpu_description

    name, width = cpu_description()
    return f"{name}; {width} float32 lanes"


def path_file():
    return cache_root() / "tune.json"


def _note(message: str) -> None:
    if notes is not None:
        notes(message)


def _load() -> dict:
    """This CPU's table from the file (empty when there is none, it is another CPU's, or unreadable)."""
    global _table
    if _table is not None:
        return _table
    _table = {}
    path = path_file()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return _table
    except (OSError, ValueError) as e:
        _note(f"the kernel tuning file {path} cannot be read ({e}); measuring again")
        return _table
    ok = (
        isinstance(data, dict)
        and data.get("format") == FORMAT
        and isinstance(data.get("paths"), dict)
        and all(isinstance(v, str) and v in _paths() for v in data["paths"].values())
    )
    if isinstance(data, dict) and isinstance(data.get("format"), int) and data["format"] < FORMAT:
        _note(f"the kernel tuning file {path} was made by an earlier rnncli; measuring again")
    elif not ok:
        _note(f"the kernel tuning file {path} is malformed; measuring again")
    elif data.get("cpu") != cpu_key():
        _note(f"the kernel tuning file {path} was made on another CPU ({data.get('cpu')}); measuring again")
    else:
        _table = dict(data["paths"])
    return _table


def _paths():
    from rnncli.kernels.cpu.gemm import PATHS

    return PATHS


def _save(table: dict) -> None:
    """Write the table atomically; a cache folder that cannot be written (full, read-only) only costs
    the next run a re-measure, said once. A folder where the file belongs is removed first."""
    from rnncli.base.errors import RnncliError
    from rnncli.base.files import write_atomic

    if paths.said("tune unwritable"):
        return
    text = json.dumps({"format": FORMAT, "cpu": cpu_key(), "paths": table}, indent=0, sort_keys=True)
    try:
        path_file().parent.mkdir(parents=True, exist_ok=True)
        _remove(path_file(), folder_only=True)
        write_atomic(path_file(), lambda f: f.write(text.encode()), "the kernel tuning file")
    except (OSError, RnncliError) as e:
        paths.note_once(
            "tune unwritable",
            f"the kernel tuning file {path_file()} cannot be written "
            f"({getattr(e, 'strerror', None) or e}); this run's measurements are not kept",
        )


def _remove(path, folder_only: bool = False) -> None:
    """Delete the tuning file (or a folder in its place; with folder_only, nothing else)."""
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif not folder_only:
        path.unlink(missing_ok=True)


def path(
    M: int, N: int, K: int, parts: int, weights: int = 1, packed: bool = True, columns: bool = False
) -> int:
    """The path for `parts` threads each computing C (M, N) = A (M, K) @ W.T, with `weights` such
    products taken in turn (1: a layer's time loop; generation's step goes through several), by
    packed weights too if `packed` (generation keeps none). With `columns`, the threads share one
    such product by columns instead, and the path is BLAS or PACKED (steps.time_columns)."""
    from rnncli.kernels.cpu import gemm

    if not enabled() or N * K < SMALL or M < 1:
        return gemm.BLAS if columns else int(gemm.rule(N, K))
    table = _load()
    key = f"{M},{N},{K},{parts}" + (f",{weights}w" if weights > 1 else "") + ("" if packed else ",flat")
    key += ",cols" if columns else ""
    if key not in table:
        table[key] = gemm.PATHS[measure(M, N, K, parts, weights, packed, columns)]
        _save(table)
    return gemm.PATHS.index(table[key])


def measure(
    M: int, N: int, K: int, parts: int, weights: int = 1, packed: bool = True, columns: bool = False
) -> int:
    """Time every path (the best of ROUNDS, the paths taking turns, after a warm-up of each) and
    return the fastest, unless the rule's path or else BLAS is within MARGIN of it (ties that the
    timing cannot split: BLAS, the library, keeps them). `columns`: BLAS against PACKED, the
    threads sharing one product of M rows by columns."""
    import numpy as np

    from rnncli.kernels.cpu import gemm, steps
    from rnncli.kernels.cpu.packed import NO_PANELS
    from rnncli.kernels.cpu.packed import packed as packed_weights

    rng = np.random.default_rng(0)
    weights = 1 if columns else max(1, min(weights, WEIGHT_BYTES // (4 * N * K)))
    A = rng.standard_normal((M if columns else M * parts, K)).astype(np.float32)
    W = rng.standard_normal((weights, N, K)).astype(np.float32)
    P = np.stack([packed_weights(w) for w in W]) if packed else None
    C = np.empty((A.shape[0], N), np.float32)
    reps = max(1, int(TARGET_S * 20e9 / (2.0 * M * N * K * weights)))  # (at a guessed 20 GFLOP/s a thread)
    if columns:
        paths, rule = (gemm.BLAS, gemm.PACKED), gemm.BLAS
        reps *= parts

        def run(p):
            steps.time_columns(A, W[0], P[0] if p == gemm.PACKED else NO_PANELS, C, reps, parts)

    else:
        paths, rule = range(len(gemm.PATHS) if packed else gemm.PACKED), int(gemm.rule(N, K))  # (PACKED last)
        W, WT = gemm.padded(W), np.ascontiguousarray(W.transpose(0, 2, 1))  # (W as the models keep it)

        def run(p):
            gemm.time_product(A, W, P if p == gemm.PACKED else WT, C, p, reps, parts)

    for p in paths:  # warm-up (and, on a cold cache, the compile)
        run(p)
    times = {p: [] for p in paths}
    for _ in range(ROUNDS):  # the paths in turn, round after round
        for p in paths:
            t0 = clock()
            run(p)
            times[p].append(clock() - t0)
    best = {p: min(t) for p, t in times.items()}
    fastest = min(best, key=best.get)
    for near in (rule, gemm.BLAS):
        if best[fastest] >= (1 - MARGIN) * best[near]:
            return near
    return fastest


def reset() -> None:
    """Forget what this process read or measured (tests; a changed RNNCLI_CACHE_DIR)."""
    global _table
    _table = None


def forget() -> None:
    """Delete this machine's measurements (`rnncli bench --tune`): the next run measures again."""
    reset()
    try:
        _remove(path_file())
    except OSError as e:
        from rnncli.base.errors import RnncliError

        raise RnncliError(f"cannot delete the kernel tuning file {path_file()}: {e.strerror}") from None
