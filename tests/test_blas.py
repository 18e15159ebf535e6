"""kernels/cpu/blas.py: the products compiled code sends to BLAS, through whichever library they are
bound to, against float64; and the fallback that goes through Numba's own BLAS helper."""

import ctypes
import functools
import os
import subprocess
import sys

import numpy as np
import pytest
from numba import types
from numba.core.errors import NumbaPerformanceWarning

from rnncli.kernels.cpu import blas
from rnncli.kernels.jit import kernel


@kernel
def _product(A, B, C):
    blas.gemm(A, B, C)


@functools.cache
def _any_layout():
    """_product compiled once more, for operands typed as of any layout ("A" to Numba), with no other
    compile allowed: every layout then runs the one compiled function. (Compiled for each combination
    of the layouts Numba tells apart, C, F and A, the test took 109 s on 2 Zen 3 cores, 11 compiles.)"""
    any2 = types.float32[:, :]
    product = kernel(_product.py_func)
    product.compile((any2, any2, any2))
    product.disable_compile()
    return product


def _layouts(X):
    """X as C-ordered rows, as the transpose of a C-ordered array, with neither side contiguous,
    and with its rows in reverse order in memory."""
    wide = np.zeros((X.shape[0], 2 * X.shape[1]), np.float32)
    wide[:, ::2] = X
    return [X, np.asfortranarray(X), wide[:, ::2], np.ascontiguousarray(X[::-1])[::-1]]


@pytest.mark.filterwarnings("ignore", category=NumbaPerformanceWarning)  # (the non-contiguous case's np.dot)
@pytest.mark.parametrize(
    "M,K,N",
    [(3, 5, 7), (1, 9, 4), (1, 1, 6), (6, 1, 3), (5, 8, 1), (32, 70, 65), (0, 3, 2), (1, 0, 5), (3, 0, 5)],
)
def test_every_layout_and_shape_matches_float64(M, K, N):
    rng = np.random.default_rng(M * 100 + K * 10 + N)
    A = rng.standard_normal((M, K)).astype(np.float32)
    B = rng.standard_normal((K, N)).astype(np.float32)
    want = A.astype(np.float64) @ B
    for a in _layouts(A):
        for b in _layouts(B):
            # the C- and F-ordered operands also as Numba types them (the kernels' products)
            for product in (_any_layout(), _product) if a.flags.forc and b.flags.forc else (_any_layout(),):
                C = np.full((M, N), np.nan, np.float32)
                product(a, b, C)
                np.testing.assert_allclose(C, want, atol=1e-4)
    for c in _layouts(np.full((M, N), np.nan, np.float32)):  # every layout of C, too
        _any_layout()(A, B, c)
        np.testing.assert_allclose(c, want, atol=1e-4)


def test_rows_of_a_larger_output_are_written_in_place():
    """C a block of rows of a bigger array (as each thread's share is): nothing outside it changes."""
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((6, 5)).astype(np.float32)
    C = np.full((10, 5), 7.0, np.float32)
    _product(A, B, C[3:7])
    np.testing.assert_allclose(C[3:7], A.astype(np.float64) @ B, atol=1e-5)
    assert (C[:3] == 7.0).all() and (C[7:] == 7.0).all()


def test_a_block_of_columns_of_a_larger_output_is_written_in_place():
    """C a block of columns (as each thread's share of a step's product is, split by columns), on one
    row and on several: nothing outside it changes."""
    rng = np.random.default_rng(2)
    for M in (1, 4):
        A, B = rng.standard_normal((M, 6)).astype(np.float32), rng.standard_normal((6, 5)).astype(np.float32)
        C = np.full((M, 12), 7.0, np.float32)
        _any_layout()(A, B, C[:, 3:8])
        np.testing.assert_allclose(C[:, 3:8], A.astype(np.float64) @ B, atol=1e-5)
        assert (C[:, :3] == 7.0).all() and (C[:, 8:] == 7.0).all()


def _ptr(x):
    return x.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("trans_a", [False, True])
def test_the_fallback_sgemm_is_row_major_cblas(trans_a, trans_b):
    rng = np.random.default_rng(2)
    M, K, N = 3, 5, 7
    A, B = rng.standard_normal((M, K)).astype(np.float32), rng.standard_normal((K, N)).astype(np.float32)
    a = np.ascontiguousarray(A.T) if trans_a else A
    b = np.ascontiguousarray(B.T) if trans_b else B
    C = np.ones((M, N), np.float32)
    blas._numba_gemm.ctypes(
        blas.ROW_MAJOR,
        blas.TRANS if trans_a else blas.NO_TRANS,
        blas.TRANS if trans_b else blas.NO_TRANS,
        M,
        N,
        K,
        2.0,
        _ptr(a),
        a.shape[1],
        _ptr(b),
        b.shape[1],
        0.5,
        _ptr(C),
        N,
    )
    np.testing.assert_allclose(C, 2.0 * (A.astype(np.float64) @ B) + 0.5, atol=1e-5)


@pytest.mark.parametrize("trans", [False, True])
def test_the_fallback_sgemv_is_row_major_cblas(trans):
    rng = np.random.default_rng(3)
    A = rng.standard_normal((4, 6)).astype(np.float32)
    x = rng.standard_normal(6 if not trans else 4).astype(np.float32)
    y = np.ones(4 if not trans else 6, np.float32)
    blas._numba_gemv.ctypes(
        blas.ROW_MAJOR,
        blas.TRANS if trans else blas.NO_TRANS,
        4,
        6,
        2.0,
        _ptr(A),
        6,
        _ptr(x),
        1,
        0.5,
        _ptr(y),
        1,
    )
    np.testing.assert_allclose(y, 2.0 * ((A.T if trans else A).astype(np.float64) @ x) + 0.5, atol=1e-5)


def test_cached_kernels_run_on_the_fallback_too():
    """RNNCLI_BLAS=numba binds the symbols to the fallback; kernels compiled and cached beside
    the other binding load and give the same products. (The session's cache, where the test above
    has compiled them: a cache of its own compiled every layout's product again, a minute of CPU.)"""
    script = (
        "import numpy as np; from tests.test_blas import test_every_layout_and_shape_matches_float64 as t; "
        "from rnncli.kernels.cpu import blas; t(32, 70, 65); t(1, 9, 4); print(blas.SOURCE)"
    )
    env = dict(os.environ)
    first = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(
        [sys.executable, "-c", script], env=dict(env, RNNCLI_BLAS="numba"), capture_output=True, text=True
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "numba"
