"""cuda_ops against NumPy (float64 where it matters), in the CUDA simulator: array helpers, the tiled
product (plain, transposed, with and without bias, split along the reduction), gathers and scatters,
cross-entropy, Adam and the sum of squares. Shapes are small and odd, and some exceed one 64 x 64
tile in every direction, so every edge of every tile is exercised."""

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("simulator tests: run with NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)
pytestmark = pytest.mark.cuda

import numpy as np  # noqa: E402

from rnncli.kernels import reference  # noqa: E402
from rnncli.kernels.cuda import backend as K  # noqa: E402
from rnncli.kernels.cuda import ops as cuda_ops  # noqa: E402


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def close(got, want, tol=2e-5):
    np.testing.assert_allclose(K.to_host(got), want, rtol=tol, atol=tol)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_array_helpers(rng):
    a = rand(rng, 3, 4)
    d = K.asarray(a)
    assert K.asarray(d) is d
    np.testing.assert_array_equal(K.to_host(d), a)
    np.testing.assert_array_equal(K.to_host(K.copy(d)), a)
    z = K.zeros((2, 3, 5))
    assert z.shape == (2, 3, 5) and z.dtype == np.float32 and not K.to_host(z).any()
    zi = K.zeros((4,), np.int64)
    assert zi.dtype == np.int64 and not K.to_host(zi).any()
    assert K.empty((2, 0, 3)).shape == (2, 0, 3) and K.zeros((0, 3)).shape == (0, 3)


def test_copy_into_views(rng):
    hs, h0 = K.zeros((2, 4, 3, 5)), K.asarray(rand(rng, 2, 3, 5))  # (L, T+1, B, H) and (L, B, H)
    K.copy_into(hs[1, 0], h0[1])  # a contiguous view from a contiguous view
    host = np.zeros((2, 4, 3, 5), np.float32)
    host[1, 0] = K.to_host(h0)[1]
    np.testing.assert_array_equal(K.to_host(hs), host)
    src = rand(rng, 6, 7)
    K.copy_into(hs[0, :, 1, 1:4], K.asarray(src)[1:5, 2:5])  # strided into strided
    host[0, :, 1, 1:4] = src[1:5, 2:5]
    np.testing.assert_array_equal(K.to_host(hs), host)
    big = rand(rng, 2, 3, 4, 6)
    K.copy_into(hs[:, 1:, :, 1:], K.asarray(big)[:, :, 1:, 2:])  # 4-d, strided
    host[:, 1:, :, 1:] = big[:, :, 1:, 2:]
    np.testing.assert_array_equal(K.to_host(hs), host)
    K.copy_into(hs[1, 2], src[:3, :5])  # a host source
    host[1, 2] = src[:3, :5]
    np.testing.assert_array_equal(K.to_host(hs), host)
    with pytest.raises(ValueError):
        K.copy_into(hs[0, 0], h0)


@pytest.mark.parametrize(
    "N,Kd,M,transposed,with_bias",
    # one tile, every combination; two tiles each way (each 256-thread block costs seconds in the
    # simulator), each layout of B once and the bias once, beyond the first tile
    [(7, 5, 11, t, b) for t in (False, True) for b in (False, True)]
    + [(70, 20, 67, False, True), (70, 20, 67, True, False)],
)
def test_matmul(rng, N, Kd, M, transposed, with_bias):
    A = rand(rng, N, Kd)
    W = rand(rng, M, Kd) if transposed else rand(rng, Kd, M)
    Bm64 = (W.T if transposed else W).astype(np.float64)
    b = rand(rng, M) if with_bias else None
    Wd = K.asarray(W)
    Bm = K.transpose_view(Wd) if transposed else Wd
    out = K.asarray(np.full((N, M), np.nan, np.float32))
    K.matmul(K.asarray(A), Bm, None if b is None else K.asarray(b), out)
    want = A.astype(np.float64) @ Bm64 + (0.0 if b is None else b)
    close(out, want, 1e-4)


def test_matmul_split_reduction(rng, monkeypatch):
    """Few output tiles and a long reduction: the blocks split it, and their parts are summed."""
    monkeypatch.setattr(cuda_ops, "_MIN_SPLIT", 16)
    A, W, b = rand(rng, 9, 50), rand(rng, 6, 50), rand(rng, 6)
    out = K.empty((9, 6))
    K.matmul(K.asarray(A), K.transpose_view(K.asarray(W)), K.asarray(b), out)
    close(out, A.astype(np.float64) @ W.T + b, 1e-4)


def test_matmul_rows_in_several_launches(rng, monkeypatch):
    """More rows than one launch's grid may hold (65535 blocks of 64 rows): the rows go in parts."""
    monkeypatch.setattr(cuda_ops, "_MAX_ROWS", 64)
    A, W, b = rand(rng, 150, 7), rand(rng, 9, 7), rand(rng, 9)
    out = K.empty((150, 9))
    K.matmul(K.asarray(A), K.transpose_view(K.asarray(W)), K.asarray(b), out)
    close(out, A.astype(np.float64) @ W.T + b, 1e-4)


@pytest.mark.parametrize("N,G,I,min_split", [(7, 11, 5, 256), (37, 19, 23, 256), (50, 3, 4, 16)])
def test_weight_grad(rng, monkeypatch, N, G, I, min_split):
    """g_weight = d.T @ x, g_bias = column sums of d; (50, ...) splits the reduction among blocks."""
    monkeypatch.setattr(cuda_ops, "_MIN_SPLIT", min_split)
    d, x = rand(rng, N, G), rand(rng, N, I)
    gw, gb = K.asarray(np.full((G, I), np.nan, np.float32)), K.asarray(np.full(G, np.nan, np.float32))
    K.weight_grad(K.Scratch(), K.asarray(d), K.asarray(x), gw, gb)
    close(gw, d.astype(np.float64).T @ x, 1e-4)
    close(gb, d.astype(np.float64).sum(0), 1e-4)


def test_gather_rows(rng):
    table, ids = rand(rng, 9, 37), rng.integers(0, 9, 13)
    out = K.empty((13, 37))
    K.gather_rows(K.asarray(table), K.asarray(ids), out)
    np.testing.assert_array_equal(K.to_host(out), table[ids])


@pytest.mark.parametrize("fn", ["scatter_rows", "embedding_backward"])
def test_scatter_rows(rng, fn):
    """Both overwrite: rows of ids never seen end as zeros; repeated ids sum in row order."""
    ids = np.array([3, 0, 3, 5, 3, 0, 8, 5, 3, 1, 0], np.int64)
    d = rand(rng, len(ids), 7)
    out = K.asarray(np.full((10, 7), 5.0, np.float32))
    getattr(K, fn)(K.asarray(ids), K.asarray(d), out)
    want = np.zeros((10, 7), np.float32)
    for n, v in enumerate(ids):
        want[v] += d[n]  # float32, in row order: the same sums bit for bit
    np.testing.assert_array_equal(K.to_host(out), want)


@pytest.mark.parametrize(
    "N,V,scale,spread", [(7, 11, 1.0, 3.0), (5, 300, 0.2, 3.0), (3, 1, 1.0, 1.0), (4, 70, 0.5, 40.0)]
)
def test_softmax_xent(rng, N, V, scale, spread):
    logits, targets = rand(rng, N, V) * spread, rng.integers(0, V, N)
    dl = K.empty((N, V))
    loss = K.softmax_xent(K.asarray(logits), K.asarray(targets), dl, scale)
    z = logits.astype(np.float64)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    assert abs(loss - -logp[np.arange(N), targets].sum()) < 1e-5 * N
    want = np.exp(logp)
    want[np.arange(N), targets] -= 1.0
    close(dl, want * scale, 1e-6)


def test_multiply(rng):
    x, y = rand(rng, 3, 5, 7), rand(rng, 3, 5, 7)
    out = K.empty((3, 5, 7))
    K.multiply(K.asarray(x), K.asarray(y), out)
    np.testing.assert_array_equal(K.to_host(out), x * y)
    xd = K.asarray(x)
    K.multiply(xd, K.asarray(y), xd)  # in place, as the model does with masks
    np.testing.assert_array_equal(K.to_host(xd), x * y)


@pytest.mark.parametrize("clip", [0.0, 0.5])
def test_adam_two_steps(rng, clip):
    """Two steps against the float64 reference (global-norm clipping through `scale`)."""
    n = 300
    p, m, v = rand(rng, n), np.zeros(n, np.float32), np.zeros(n, np.float32)
    P, M, Vd = {"w": p.astype(np.float64)}, {"w": np.zeros(n)}, {"w": np.zeros(n)}
    dp, dm, dv = K.asarray(p), K.asarray(m), K.asarray(v)
    for step in (1, 2):
        g = rand(rng, n)
        norm = reference.adam_step(P, {"w": g.astype(np.float64)}, M, Vd, step, 1e-2, clip=clip)
        scale = min(1.0, clip / (norm + 1e-6)) if clip > 0 else 1.0
        gd = K.asarray(g)
        assert abs(np.sqrt(K.sum_squares(gd)) - norm) < 1e-9 * norm
        K.adam_update(dp, gd, dm, dv, 1e-2, 0.9, 0.999, 1e-8, float(step), scale)
        close(dm, M["w"], 1e-6)
        close(dv, Vd["w"], 1e-6)
        close(dp, P["w"], 1e-5)


@pytest.mark.parametrize("n", [1, 1000, 2500])
def test_sum_squares(rng, n):
    x = rand(rng, n)
    got = K.sum_squares(K.asarray(x))
    want = float((x.astype(np.float64) ** 2).sum())
    assert abs(got - want) <= 1e-12 * want


def test_ptx_table():
    """Every kernel of the module is in PTX, with a signature of its arity."""
    import inspect

    names = {name for name, obj in vars(cuda_ops).items() if hasattr(obj, "py_func") and name.startswith("_")}
    assert names == {name for name, _, _ in cuda_ops.PTX}
    for name, fn, sig in cuda_ops.PTX:
        assert len(inspect.signature(fn).parameters) == len(sig), name
