"""The Numba kernels against the float64 reference: outputs, every gradient, Adam trajectories."""

import zlib

import numpy as np
import pytest

from rnncli.kernels import reference
from rnncli.kernels.cells import sigmoid32, tanh32
from rnncli.kernels.cpu import tune
from rnncli.kernels.cpu.gemm import PACKED, PATHS, ROWS, ROWS4, matmul_nn, matmul_nt, product, rule
from rnncli.kernels.cpu.packed import packed
from rnncli.kernels.jit import kernel
from rnncli.model.config import TrainConfig
from rnncli.model.model import Model
from rnncli.model.optim import Adam
from tests.helpers import CELLS, as64, assert_close, random_case, run_kernels, run_reference

SHAPES = {  # (V, E, H, L, T, B): batch 1, one step, three layers, sizes that are multiples of nothing
    "tiny": (13, 5, 7, 2, 6, 3),
    "b1": (11, 3, 9, 1, 5, 1),
    "t1": (17, 6, 5, 2, 1, 4),
    "deep": (19, 7, 11, 3, 7, 5),
    "wide": (67, 33, 37, 2, 9, 13),
    # the recurrent products' paths by gemm.rule (forced below, whatever the tuner would measure):
    # lstm forward by matmul_nn at "mid", by matmul_nt at "long"; backward by matmul_nt at both,
    # and by matmul_nn for the rnn at "rows"
    "mid": (9, 5, 100, 2, 4, 3),
    "long": (7, 4, 259, 2, 3, 5),
    "rows": (7, 4, 384, 1, 2, 3),
}
SEEDS = {name: zlib.crc32(name.encode()) % 1000 for name in SHAPES}  # (str's hash() is salted per process)


def shapes(names=SHAPES):
    """The shapes as test parameters whose ids name their seed: a failure can be run again."""
    return [pytest.param(name, id=f"{name}-seed{SEEDS[name]}") for name in names]


def force_path(monkeypatch, path=None):
    """Every recurrent product by `path` (gemm.PATHS), or by gemm.rule when None: not by what the
    tuner measured on this machine."""

    def chosen(M, N, K, parts, weights=1, packed=True, columns=False):
        if columns:  # (the column split's paths: BLAS or PACKED)
            return PACKED if path == "packed" else PATHS.index("blas")
        if path is None or (path == "packed" and not packed):  # (generation keeps no packed weights)
            return int(rule(N, K))
        return PATHS.index(path)

    monkeypatch.setattr(tune, "path", chosen)


def assert_matches(got, want, what=""):
    """Outputs and every gradient, each within a tolerance scaled to its own largest value."""
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5), what
    if got["logits"] is not None:
        assert_close(got["logits"], want["logits"], atol=2e-5, what=f"logits {what}")
    assert_close(got["h_n"], want["h_n"], atol=2e-6, what=f"h_n {what}")
    assert_close(got["c_n"], want["c_n"], atol=2e-6, what=f"c_n {what}")  # (zeros but for the lstm)
    for name, g in want["grads"].items():
        assert_close(got["grads"][name], g, atol=2e-5 * max(np.abs(g).max(), 1e-3), what=f"{name} {what}")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("shape", shapes())
@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_kernels_match_reference(monkeypatch, cell, shape, dropout):
    force_path(monkeypatch)
    V, E, H, L, T, B = SHAPES[shape]
    case = random_case(cell, V, E, H, L, T, B, seed=SEEDS[shape], dropout=dropout)
    assert_matches(run_kernels(*case), run_reference(*case), f"(seed {SEEDS[shape]})")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("shape", shapes(["b1", "wide", "long"]))
def test_every_product_path_matches_reference(monkeypatch, cell, shape, path):
    """Forward and backward with each product path forced (W_hh.T made, padded or left out as the
    path needs): one row, rows and columns left over from the tiles, K past 256."""
    force_path(monkeypatch, path)
    V, E, H, L, T, B = SHAPES[shape]
    case = random_case(cell, V, E, H, L, T, B, seed=SEEDS[shape])
    assert_matches(run_kernels(*case), run_reference(*case), f"(seed {SEEDS[shape]}, path {path})")


@pytest.mark.parametrize("path", ["blas", "packed"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("shape", ["tiny", "b1", "t1", "wide"])
def test_column_split_matches_reference(monkeypatch, cell, shape, path):
    """The time loops that share each step's product by columns of W_hh (large weights; here forced),
    by BLAS and by the packed kernel (each thread its panels)."""
    from rnncli.kernels.cpu import backend as cpu

    force_path(monkeypatch, path)
    monkeypatch.setattr(cpu, "_by_columns", lambda B, W_hh: True)
    monkeypatch.setattr(cpu, "threads", lambda: 3)  # (uneven blocks, whatever the machine's cores)
    V, E, H, L, T, B = SHAPES[shape]
    case = random_case(cell, V, E, H, L, T, B, seed=7)
    assert_matches(run_kernels(*case), run_reference(*case), "(seed 7)")


def test_column_split_is_taken_for_large_weights_and_batches_on_several_threads(monkeypatch):
    from rnncli.kernels.cpu import backend as cpu

    monkeypatch.setattr(cpu, "threads", lambda: 2)
    large, small = np.empty((1536, 512), np.float32), np.empty((512, 512), np.float32)  # 3 MiB, 1 MiB
    assert cpu._by_columns(64, large)
    assert not cpu._by_columns(32, large)  # 16 rows a thread: BLAS runs them badly
    assert not cpu._by_columns(64, small)
    monkeypatch.setattr(cpu, "threads", lambda: 1)
    assert not cpu._by_columns(64, large)


def test_the_cache_check_tells_the_two_splits_apart(monkeypatch, tmp_path):
    """Training's cold check asks for its own driver by exact name: the column split's in the cache
    does not make the row split's compiled, and a large model with only the row split's cached
    still has its first step to compile."""
    import numba

    from rnncli.kernels import jit
    from rnncli.kernels.cpu import backend as cpu

    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "cpu_kernels.sequence_backward_cols-125.py311.nbi").touch()
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))
    assert not jit.compiled_on_disk("sequence_backward", exact=True)
    assert jit.compiled_on_disk("sequence_backward") and jit.compiled_on_disk(
        "sequence_backward_cols", exact=True
    )
    monkeypatch.setattr(cpu, "threads", lambda: 2)
    large = np.empty((1536, 512), np.float32)
    assert not cpu.compiles_first(64, large)
    (tmp_path / "k" / "cpu_kernels.sequence_backward_cols-125.py311.nbi").unlink()
    assert cpu.compiles_first(64, large) and not cpu.compiles_first(64, large[:256])


@pytest.mark.parametrize("cell", CELLS)
def test_adam_trajectory_matches_reference(cell):
    """Ten steps of clipped Adam on one window: losses and final weights agree."""
    params, ids, targets, h0, c0, _ = random_case(cell, seed=3)
    cfg = TrainConfig(lr=0.01, clip=0.5)
    P = as64(params)
    m = {k: np.zeros_like(v) for k, v in P.items()}
    v = {k: np.zeros_like(x) for k, x in P.items()}
    model, grads, adam = Model(params), params.zeros_like(), Adam(params.data.size, cfg)
    for step in range(1, 11):
        loss = model.loss_and_grads(ids, targets, h0, c0, grads)
        adam.step(params.data, grads.data, cfg.lr)
        ref = reference.forward_backward(P, cell, ids, targets, h0.astype(float), c0.astype(float))
        reference.adam_step(P, ref["grads"], m, v, step, cfg.lr, clip=cfg.clip)
        assert loss == pytest.approx(ref["loss"], rel=2e-5), f"step {step}"
    for name, value in P.items():
        assert_close(params[name], value, atol=2e-5, what=name)


@kernel
def _apply(f_code, x, out):
    for i in range(x.shape[0]):
        out[i] = tanh32(x[i]) if f_code == 0 else sigmoid32(x[i])


def test_fast_tanh_and_sigmoid_are_accurate():
    x = np.linspace(-30, 30, 600_001).astype(np.float32)
    out = np.empty_like(x)
    _apply(0, x, out)
    assert np.abs(out - np.tanh(x.astype(np.float64))).max() < 5e-7
    assert np.abs(out).max() <= 1.0
    _apply(1, x, out)
    assert np.abs(out - 1 / (1 + np.exp(-x.astype(np.float64)))).max() < 5e-7
    assert out[0] >= 0.0


@pytest.mark.parametrize(
    "M,K,N", [(1, 3, 1), (2, 8, 8), (5, 300, 13), (6, 17, 24), (25, 131, 512), (3, 1100, 9), (4, 16, 400)]
)
def test_products_match_float64(M, K, N):
    """Every path of the recurrent product (both kernels of gemm.py, both tile widths, BLAS, the packed
    outer-product kernel (packed from W and from W.T alike), through
    `product` as the drivers call it) on shapes with rows, columns and k's left over from their tiles."""
    rng = np.random.default_rng(M * K * N)
    A, W = rng.standard_normal((M, K)).astype(np.float32), rng.standard_normal((N, K)).astype(np.float32)
    want = A.astype(np.float64) @ W.T.astype(np.float64)
    WT = np.ascontiguousarray(W.T)
    # as the model calls it: only the operand that is read, W's rows padded
    padded, empty = np.zeros((N, K + 16), np.float32), np.zeros((0, 0), np.float32)
    padded[:, :K] = W

    def only(p):
        return (padded, empty) if p in (ROWS, ROWS4) else (empty, P if p == PACKED else WT)

    P = packed(W)
    assert np.array_equal(packed(WT, transposed=True), P)
    runs = [lambda C: matmul_nt(A, W, C), lambda C: matmul_nt(A, W, C, 4), lambda C: matmul_nn(A, WT, C)]
    runs += [lambda C, p=p: product(A, W, P if p == PACKED else WT, C, p) for p in range(len(PATHS))]
    runs += [lambda C, p=p: product(A, *only(p), C, p) for p in range(len(PATHS))]
    assert rule(N, K) in range(len(PATHS))
    for run in runs:
        C = np.full((M, N), np.nan, np.float32)
        run(C)
        assert_close(C, want, atol=1e-5 * np.sqrt(K), what="A @ W.T")  # sums of K unit-scale terms
