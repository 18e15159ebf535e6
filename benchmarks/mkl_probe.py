"""One recurrent step's product, C (M, N) = A (M, K) @ B, on this CPU: NumPy's OpenBLAS, MKL, MKL with
B packed once (cblas_sgemm_pack, then cblas_sgemm_compute at every call), each library threading the
whole batch itself, and rnncli's paths (gemm.PATHS, the packed kernel among them) run as the
sequence drivers run them, every kernel thread on its own rows by single-threaded code. First, one
core's multiply-add peak (12 independent vector multiply-adds on registers), the yardstick for the
one-thread shapes. On one thread, the MKL columns are what each
kernel thread would get from a packed-MKL path (issue 23; docs/performance.md has the numbers).
GFLOP/s, medians over rounds; each round times every method (best of 3) in an order that turns round
by round, so that a slow spell of a shared machine falls on all of them.

    pip install mkl        # (the wheel is about 230 MB; rnncli does not use it)
    python benchmarks/mkl_probe.py [--rounds 3] [--seconds 0.03]     # GFLOP/s: median (range) of rounds

Shapes: the bench's small (2 x 128) and medium (2 x 512) models at batch 50 and 64: the whole batch
on 2 threads and one thread's rows on 1, LSTM (N = 4H) and GRU (N = 3H), and what one thread
computes where the medium model's time loop shares each step by columns of W_hh (backend._by_columns).
The products see the same operands at every call (warm caches, as a time loop's weights are) and
leave out the cell math.
"""

import argparse
import ctypes
import os
import statistics
import sys
import time
from importlib import metadata

import numpy as np
from threadpoolctl import threadpool_limits

from rnncli.kernels.cpu.packed import TILE_N, _broadcast, _fma, _lane, _zero
from rnncli.kernels.cpu.packed import packed as pack_weights
from rnncli.kernels.jit import kernel

SHAPES = [  # (what, M rows in all, K, N, threads)
    ("small lstm, forward", 50, 128, 512, 2),
    ("small lstm, forward, a thread's rows", 25, 128, 512, 1),
    ("small lstm, backward", 50, 512, 128, 2),
    ("medium lstm, forward", 64, 512, 2048, 2),
    ("medium lstm, forward, a thread's rows", 32, 512, 2048, 1),
    ("medium gru, forward", 64, 512, 1536, 2),
    ("medium gru, forward, a thread's rows", 32, 512, 1536, 1),
    ("medium lstm, forward, a thread's columns", 64, 512, 1024, 1),
    ("medium lstm, backward, a thread's columns", 64, 2048, 256, 1),
]
ROW_MAJOR, NO_TRANS, TRANS, B_MATRIX, PACKED = 101, 111, 112, 162, 151
_i, _f, _p = ctypes.c_longlong, ctypes.c_float, ctypes.c_void_p


def load_mkl():
    """The `mkl` wheel's libmkl_rt, with the ILP64 (_64) CBLAS names typed, or None."""
    try:
        files = metadata.distribution("mkl").files or []
    except metadata.PackageNotFoundError:
        return None
    found = sorted(str(f.locate()) for f in files if os.path.basename(str(f)).startswith("libmkl_rt."))
    if not found:
        return None
    lib = ctypes.CDLL(found[0])
    lib.cblas_sgemm_pack_get_size_64.restype = ctypes.c_size_t
    lib.cblas_sgemm_pack_get_size_64.argtypes = [ctypes.c_int, _i, _i, _i]
    lib.cblas_sgemm_pack_64.argtypes = [ctypes.c_int] * 3 + [_i] * 3 + [_f, _p, _i, _p]
    lib.cblas_sgemm_compute_64.argtypes = [ctypes.c_int] + [_i] * 5 + [_p, _i, _p, _i, _f, _p, _i]
    lib.cblas_sgemm_64.argtypes = [ctypes.c_int] * 3 + [_i] * 3 + [_f, _p, _i, _p, _i, _f, _p, _i]
    lib.MKL_Set_Num_Threads.argtypes = [ctypes.c_int]
    return lib


def timed(f, seconds: float, clock=time.perf_counter) -> float:
    """Seconds a call, best of 3 runs of about `seconds` each (after a warm-up), by `clock`."""
    t = clock()
    n = 0
    while clock() - t < seconds / 5:
        f()
        n += 1
    reps = max(1, 5 * n)
    best = []
    for _ in range(3):
        t = clock()
        for _ in range(reps):
            f()
        best.append((clock() - t) / reps)
    return min(best)


def methods(M, K, N, threads, mkl):
    """name -> (setup, call): after setup, the call computes the whole batch's product once on
    `threads` threads."""
    from rnncli.kernels.cpu import gemm

    rng = np.random.default_rng(0)
    A = rng.standard_normal((M, K)).astype(np.float32)
    W = rng.standard_normal((N, K)).astype(np.float32)  # (as the models keep W_hh: C = A @ W.T)
    WT = np.ascontiguousarray(W.T)
    C = np.empty((M, N), np.float32)
    out = {}

    def blas_threads(n):
        return lambda: threadpool_limits(n, user_api="blas")

    out["openblas"] = (blas_threads(threads), lambda: np.matmul(A, WT, out=C))
    if mkl is not None:
        size = mkl.cblas_sgemm_pack_get_size_64(B_MATRIX, M, N, K)
        buf = np.empty(size // 4 + 16, np.float32)
        mkl.MKL_Set_Num_Threads(threads)
        mkl.cblas_sgemm_pack_64(ROW_MAJOR, B_MATRIX, TRANS, M, N, K, 1.0, W.ctypes.data, K, buf.ctypes.data)
        a, b, c, p = A.ctypes.data, W.ctypes.data, C.ctypes.data, buf.ctypes.data

        def plain(keep=(A, W, C)):  # (holding the arrays: a, b, c are only their addresses)
            mkl.cblas_sgemm_64(ROW_MAJOR, NO_TRANS, TRANS, M, N, K, 1.0, a, K, b, K, 0.0, c, N)

        def packed(keep=(A, buf, C)):
            mkl.cblas_sgemm_compute_64(ROW_MAJOR, NO_TRANS, PACKED, M, N, K, a, K, p, N, 0.0, c, N)

        # (threadpoolctl sets MKL's threads too, once it is loaded)
        out["mkl"], out["mkl packed"] = (blas_threads(threads), plain), (blas_threads(threads), packed)
    # rnncli's paths: `threads` kernel threads, each on its M / threads rows by single-threaded code
    Wp, WT3, P3 = gemm.padded(W[None]), WT[None], pack_weights(W)[None]
    for path, name in enumerate(gemm.PATHS):
        run = lambda p=path: gemm.time_product(A, Wp, P3 if p == gemm.PACKED else WT3, C, p, 1, threads)
        out[f"rnncli {name}"] = (blas_threads(1), run)
    return out


@kernel
def _fma_peak(n):
    """n rounds of 12 independent vector multiply-adds on registers (packed.py's tile without
    its loads): the most multiply-adds one core runs."""
    a, b = _broadcast(np.float32(0.999)), _broadcast(np.float32(0.001))
    c0, c1, c2, c3, c4, c5 = _zero(), _zero(), _zero(), _zero(), _zero(), _zero()
    for _ in range(n):
        c0, c1, c2 = _fma(c0, a, b), _fma(c1, a, b), _fma(c2, a, b)
        c3, c4, c5 = _fma(c3, a, b), _fma(c4, a, b), _fma(c5, a, b)
    return _lane(c0, 0) + _lane(c1, 0) + _lane(c2, 0) + _lane(c3, 0) + _lane(c4, 0) + _lane(c5, 0)


def peak_gflops(seconds: float, clock) -> float:
    """One core's float32 multiply-add rate, GFLOP/s (_fma_peak)."""
    n = 1 << 20
    return 12.0 * TILE_N * n / timed(lambda: _fma_peak(n), seconds, clock) / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=0.03, help="about how long one timing runs")
    ap.add_argument("--threads", type=int, help="only the shapes run on this many threads")
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="time by the process's CPU time, not the wall clock: on a loaded machine, one thread's work "
        "is then not charged for the time others ran (meaningful for the 1-thread shapes only)",
    )
    args = ap.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    import numba

    from rnncli.kernels.cpu import backend

    mkl = load_mkl()
    print(f"mkl: {'loaded' if mkl is not None else 'not installed'}", file=sys.stderr)
    from rnncli.base.machine import cpu_description

    print(cpu_description()[0])
    print(f"one core's multiply-add peak: {peak_gflops(args.seconds, clock):.0f} GFLOP/s", flush=True)
    for what, M, K, N, threads in SHAPES:
        if args.threads not in (None, threads):
            continue
        backend.use_threads(threads)  # numba's threads; BLAS single-threaded unless a method says
        numba.set_num_threads(threads)
        fns = methods(M, K, N, threads, mkl)
        names = list(fns)
        for setup, f in fns.values():
            setup()
            f()  # (compiles, if the kernel cache is cold)
        rates = {name: [] for name in names}
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                setup, f = fns[name]
                setup()
                time.sleep(0.1)  # (lets another library's threads go to sleep)
                rates[name].append(2.0 * M * N * K / timed(f, args.seconds, clock) / 1e9)
        cells = "  ".join(
            f"{n} {statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})" for n, v in rates.items()
        )
        print(f"{what}: {M}x{K}x{N} on {threads}: {cells}", flush=True)


if __name__ == "__main__":
    main()
