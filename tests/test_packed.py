"""The packed outer-product kernel (kernels/cpu/packed.py): its tile against float64 on shapes with
rows, columns and k's left over, and its inner loop as compiled: the multiply-adds meant, held in
registers (no spills), for this CPU and for a 32-register AVX-512 one."""

import os
import platform
import re
import subprocess
import sys

import numpy as np
import pytest

from rnncli.kernels.cpu import packed as pk
from tests.helpers import assert_close


@pytest.mark.parametrize(
    "M,K,N", [(1, 1, 1), (6, 5, 16), (7, 33, 17), (13, 64, 70), (12, 0, 20), (31, 257, 300)]
)
def test_the_packed_product_matches_float64(M, K, N):
    rng = np.random.default_rng(M * 1000 + K * 10 + N)
    A, W = rng.standard_normal((M, K)).astype(np.float32), rng.standard_normal((N, K)).astype(np.float32)
    P = pk.packed(W)
    assert P.shape == (-(-N // pk.TILE_N) * K, pk.TILE_N)
    assert np.array_equal(pk.packed(np.ascontiguousarray(W.T), transposed=True), P)
    C = np.full((M, N), np.nan, np.float32)
    pk.matmul_packed(A, P, C)
    assert_close(
        C, A.astype(np.float64) @ W.T.astype(np.float64), atol=1e-5 * np.sqrt(max(K, 1)), what="A @ W.T"
    )
    # panels p0..p1 only: the columns of the others are left alone
    if N > pk.TILE_N:
        D = np.full((M, N), 7.0, np.float32)
        pk.matmul_packed(A, P, D, 1, 2)
        cols = slice(pk.TILE_N, min(2 * pk.TILE_N, N))
        assert np.array_equal(D[:, cols], C[:, cols]) and (D[:, : pk.TILE_N] == 7.0).all()


def test_weights_packed_for_other_shapes_are_refused():
    A, C = np.ones((3, 8), np.float32), np.empty((3, 20), np.float32)
    with pytest.raises(ValueError, match="not W packed"):
        pk.matmul_packed(A, pk.packed(np.ones((20, 9), np.float32)), C)


# the inner loop of _tile in x86 assembly: from the label before its first multiply-add to the jump back
LOOP_PROBE = """
import re
from rnncli.kernels.cpu import packed as pk
pk.matmul_packed.compile("(float32[:, ::1], float32[:, ::1], float32[:, ::1], int64, int64)")  # (not run)
lines = next(iter(pk._tile.inspect_asm().values())).splitlines()
first = next(i for i, line in enumerate(lines) if "vfmadd" in line)
start = next(i for i in range(first, -1, -1) if re.match(r"^\\.LBB\\w+:", lines[i]))
label = lines[start][:-1]
jump = re.compile(r"\\bj\\w+\\s+" + re.escape(label) + "$")
end = next(i for i in range(first, len(lines)) if jump.search(lines[i]))
print(pk.TILE_N)
print("\\n".join(lines[start : end + 1]))
"""
AVX512 = "+avx512f,+avx512dq,+avx512bw,+avx512vl,+avx2,+avx,+fma,+f16c,+sse4.2,+popcnt,+bmi,+bmi2"


def inner_loop(tmp_path, cpu_name=None, features=None):
    """(TILE_N, the loop's lines) as Numba compiles _tile for the host, or for the CPU named."""
    # an empty kernel cache: a kernel loaded from disk has no assembly to show (and another CPU's
    # kernels are only compiled here, never run)
    env = dict(os.environ, RNNCLI_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_CACHE_DIR", None)
    if cpu_name:
        env.update(NUMBA_CPU_NAME=cpu_name, NUMBA_CPU_FEATURES=features)
    out = subprocess.run(
        [sys.executable, "-c", LOOP_PROBE], env=env, capture_output=True, text=True, check=True
    )
    tile_n, *loop = out.stdout.splitlines()
    return int(tile_n), loop


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="reads x86 assembly")
@pytest.mark.parametrize("target", ["host", "skylake-avx512"])
def test_the_inner_loop_is_multiply_adds_in_registers(tmp_path, target):
    """Each k of the loop: TILE_M x TILE_N / lanes multiply-adds on registers (6 x 2 ymm with AVX2,
    6 x 4 zmm with AVX-512), no gather, and nothing spilled to or reloaded from the stack."""
    if target == "host":
        tile_n, loop = inner_loop(tmp_path)
        if tile_n < 16:
            pytest.skip("a CPU without AVX2")
    else:
        tile_n, loop = inner_loop(tmp_path, target, AVX512)
        assert tile_n == 64
    lanes, reg = (16, "zmm") if tile_n == 64 else (8, "ymm")
    fmas = [line for line in loop if "vfmadd" in line]
    per_k = pk.TILE_M * tile_n // lanes
    assert fmas and len(fmas) % per_k == 0, "\n".join(loop)
    # (the first operand may be a panel line or a broadcast read from memory)
    assert all(re.search(rf"vfmadd\d+ps\s+\S+, %{reg}\d+, %{reg}\d+$", f.strip()) for f in fmas), "\n".join(
        fmas
    )
    assert not [line for line in loop if re.search(r"\((%rsp|%rbp)|gather", line)], "\n".join(loop)
