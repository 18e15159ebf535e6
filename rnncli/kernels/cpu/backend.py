"""The CPU backend: the kernel API that model.py, optim.py and sample.py call, on NumPy arrays.

kernels/cuda/backend.py has the same names and signatures on device arrays. What is the CPU's own stays
here: Numba's thread pool (each thread calling single-threaded BLAS on its share of the rows), the
path each recurrent product takes (rnncli/kernels/cpu/tune.py: measured per shape on this CPU) and so which
transpose of W_hh it reads, the padding that keeps its rows off 4 KiB multiples, and the
per-thread partial sums of the weight gradients. The compiled code is in cpu/steps.py
(training, scoring) and decode.py (generation).
"""

from __future__ import annotations

import os

import numba
import numpy as np

from rnncli.kernels.api import API
from rnncli.kernels.cpu import decode as _decode
from rnncli.kernels.cpu import steps as _k
from rnncli.kernels.cpu.gemm import PACKED, PAD, ROWS, ROWS4, padded
from rnncli.kernels.cpu.narrow import ONE, SPREAD
from rnncli.kernels.cpu.packed import NO_PANELS, packed

NAME = "cpu"
_NO_BIAS = np.zeros(0, np.float32)
_EMPTY = np.zeros((0, 0), np.float32)
# Below this many weights in a recurrent product (G x H), rows decoded together are shared among the
# kernel threads (each calling single-threaded BLAS); from it on, one call over all rows, threaded by
# BLAS, is faster. Measured on a Zen 2 at 64 rows: sharing 1.15-1.25x faster for 2x128 models,
# one call 1.14-1.6x faster for 2x512.
SHARE_ROWS_BELOW = 1 << 18
# A layer's time loop shares each step's product by columns above this many bytes of W_hh, given
# at least COLUMNS_ROWS rows of the batch a thread (_by_columns).
COLUMNS_ABOVE, COLUMNS_ROWS = 1 << 20, 32
# From this many weights in a matrix (N x K) on, one row's product by narrow weights is shared among
# the kernel threads by outputs (narrow.SPREAD); below, a launch costs more than the second core gives.
SPREAD_FROM = 1 << 18

# the kernel API: kernels/cuda/backend.py exports the same names with the same parameters
# (tests/cuda/test_api.py)
__all__ = list(API)  # kernels/api.py: the names every backend defines


# --- arrays --------------------------------------------------------------------------------------
def asarray(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a)


def to_host(a: np.ndarray) -> np.ndarray:
    return a


def zeros(shape, dtype=np.float32) -> np.ndarray:
    return np.zeros(shape, dtype)


def empty(shape, dtype=np.float32) -> np.ndarray:
    return np.empty(shape, dtype)


def copy(a: np.ndarray) -> np.ndarray:
    return a.copy()


def copy_into(dst: np.ndarray, src: np.ndarray) -> None:
    np.copyto(dst, src)


def transpose_view(a: np.ndarray) -> np.ndarray:
    """a.T, no copy (what matmul reads through its strides)."""
    return a.T


def scratch_bytes(model_cfg, T: int, B: int, training: bool, n_threads: int | None) -> int:
    """About the bytes a Scratch takes for running (T, B) windows on n_threads (None: all cores):
    each layer's W_hh.T, rows padded for the dot-product kernel, and when training each thread's
    partial sums of the widest weight gradient and its bias. (model.workspace_bytes adds the rest.)"""
    c = model_cfg
    G, I = c.gate_width, max(c.embed, c.hidden)
    parts = thread_count(n_threads) * G * (I + 1) if training else 0
    return 4 * (c.layers * c.hidden * (G + PAD) + parts)


class Scratch:
    """What the CPU keeps for one model between calls: each layer's W_hh.T (when a recurrent
    product reads it) and the per-thread partial sums of weight gradients, by shape."""

    def __init__(self):
        self.W_hhT: dict[int, np.ndarray] = {}
        self.parts: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


# --- threads -------------------------------------------------------------------------------------
def threads() -> int:
    return numba.get_num_threads()


def thread_count(n: int | None) -> int:
    """The kernel threads a run asking for n (None: all cores) gets."""
    return min(n or os.cpu_count() or 1, numba.config.NUMBA_NUM_THREADS)


def synchronize() -> None:
    """Wait for the kernels launched so far (on the CPU they have finished when they return)."""


def use_threads(n: int | None) -> None:
    """Run kernels on n threads (None: all cores). BLAS itself runs single-threaded: each kernel
    thread calls it on its own share of the work."""
    from threadpoolctl import (
        threadpool_limits,
    )  # (kernels/cpu/blas.py has loaded every BLAS the kernels call)

    numba.set_num_threads(thread_count(n))
    threadpool_limits(1, user_api="blas")


# --- training and scoring ------------------------------------------------------------------------
def gather_rows(table, ids, out) -> None:
    _k.gather_rows(table, ids, out, threads())


def matmul(A, Bm, bias, out) -> None:
    _k.matmul(A, Bm, _NO_BIAS if bias is None else bias, out, threads())


def weight_grad(scratch: Scratch, d, x, g_weight, g_bias) -> None:
    """g_weight = d.T @ x and g_bias = the column sums of d, over the N rows of d (N, G), x (N, I)."""
    n = threads()
    parts = scratch.parts.get((g_weight.shape, n))
    if parts is None:
        parts = scratch.parts[(g_weight.shape, n)] = (
            np.empty((n,) + g_weight.shape, np.float32),
            np.empty((n, g_weight.shape[0]), np.float32),
        )
    _k.matmul_tn(d, np.ascontiguousarray(x), g_weight, g_bias, *parts)


def _path(B: int, N: int, K: int, weights: int = 1, packed: bool = True) -> int:
    """The path of a product over B rows shared among the threads, one of `weights` taken in turn,
    PACKED among them if `packed` (tune.py)."""
    from rnncli.kernels.cpu import tune

    parts = min(threads(), B)
    return tune.path(-(-B // parts), N, K, parts, weights, packed)


def _columns_path(B: int, N: int, K: int) -> int:
    """BLAS or PACKED: how the threads share a product over B rows by columns (tune.py)."""
    from rnncli.kernels.cpu import tune

    return tune.path(B, N, K, threads(), columns=True)


def _by_columns(B: int, W_hh) -> bool:
    """Whether a layer's time loop over B rows shares each step's product among the threads by
    columns of W_hh (cpu_kernels.sequence_*_cols) rather than by rows of the batch: for weights too
    large for one core's caches, when each thread has enough rows for BLAS to run well. Measured
    on a Zen 2 (512 KiB L2 a core), two threads, B = 64: with 3-4 MiB of W_hh (medium GRU, LSTM)
    the time loops ran 8-14% faster each way; with 1 MiB (medium RNN) the same; with 64-256 KiB
    forward the same or up to 5% faster, backward 5-15% slower. With 2.25-9 MiB and B = 8-32 the
    split rows, each product by the kernel measured for it, were as fast or up to 1.6x faster."""
    n = threads()
    return n > 1 and W_hh.nbytes > COLUMNS_ABOVE and B >= COLUMNS_ROWS * n


def compiles_first(B: int, W_hh) -> bool:
    """Whether training B rows with such weights has its own time loops to compile first (the
    column split's, which a smaller model, or the recipe's probe, never compiles)."""
    from rnncli.kernels.jit import compiled_on_disk

    return _by_columns(B, W_hh) and not compiled_on_disk("sequence_backward_cols", exact=True)


def sequence_forward(scratch: Scratch, layer: int, cell: int, gx, W_hh, b_hh, hs, cs, act, gh) -> None:
    if _by_columns(gx.shape[1], W_hh):
        scratch.W_hhT[layer] = _EMPTY
        P = packed(W_hh) if _columns_path(gx.shape[1], *W_hh.shape) == PACKED else NO_PANELS
        return _k.sequence_forward_cols(cell, gx, W_hh, P, b_hh, hs, cs, act, gh, threads())
    path = _path(gx.shape[1], *W_hh.shape)
    # W_hh.T only if this direction's products read it (a 2048 x 512 transpose costs ~4 ms); packed
    # weights for this call alone
    scratch.W_hhT[layer] = _EMPTY if path in (ROWS, ROWS4, PACKED) else np.ascontiguousarray(W_hh.T)
    WT = packed(W_hh) if path == PACKED else scratch.W_hhT[layer]
    _k.sequence_forward(cell, gx, W_hh, WT, b_hh, hs, cs, act, gh, threads(), path)


def sequence_backward(
    scratch: Scratch, layer: int, cell: int, W_hh, hs, cs, act, dhs, dh_next, dc_next, dgx, dgh, tmp
) -> None:
    """Backward through the layer whose forward ran last with these weights (its W_hh.T is reused)."""
    if _by_columns(dhs.shape[1], W_hh):
        H, G = W_hh.shape[1], W_hh.shape[0]
        P = packed(W_hh, transposed=True) if _columns_path(dhs.shape[1], H, G) == PACKED else NO_PANELS
        return _k.sequence_backward_cols(
            cell, W_hh, P, hs, cs, act, dhs, dh_next, dc_next, dgx, dgh, tmp, threads()
        )
    path = _path(dhs.shape[1], W_hh.shape[1], W_hh.shape[0])
    W_hhT = scratch.W_hhT.get(layer, _EMPTY)
    if len(W_hhT) == 0 and path in (ROWS, ROWS4):  # (for the dot-product kernel: rows padded)
        W_hhT = scratch.W_hhT[layer] = padded(W_hh.T)
    if path == PACKED:  # (the product's W is W_hh.T, and its operand goes where W_hh does)
        W_hh, W_hhT = packed(W_hh, transposed=True), _EMPTY
    _k.sequence_backward(
        cell, W_hh, W_hhT, hs, cs, act, dhs, dh_next, dc_next, dgx, dgh, tmp, threads(), path
    )


def scatter_rows(ids, d, out) -> None:
    _k.scatter_rows(ids, d, out, threads())


def embedding_backward(ids, d_x, d_table) -> None:
    d_table[...] = 0.0
    _k.embedding_backward(ids, d_x, d_table)


def softmax_xent(logits, targets, dlogits, scale: float) -> float:
    loss = _k.softmax_xent(logits, targets, dlogits, threads())
    if scale != 1.0:  # (a pass of its own: inside the kernel's row loop it slowed the loop by half)
        dlogits *= np.float32(scale)
    return loss


def multiply(x, y, out) -> None:
    np.multiply(x, y, out=out)


def adam_update(p, g, m, v, lr, beta1, beta2, eps, step, scale) -> None:
    _k.adam_update(p, g, m, v, lr, beta1, beta2, eps, step, scale)


def sum_squares(x) -> float:
    return _k.sum_squares(x, threads())


# --- generation ----------------------------------------------------------------------------------
def prepare_decoding(model_cfg, rows: int, n_threads: int | None, fmt: str = "f32"):
    """How `rows` rows are decoded: (the kernel threads sharing them, each product's path). One
    row, or large products that only BLAS runs well on this CPU: one thread drives BLAS, which
    threads the products itself on `n_threads`. Otherwise each kernel thread takes a share of the
    rows and runs every product by the path measured for its shape in a step (tune.py). With
    narrow weights (fmt bf16 or int8) one row goes by narrow.py's kernels: by tiles in one thread,
    or shared among the threads by outputs from SPREAD_FROM weights on; more rows go as float32
    does, reading the same values widened (decode.layout), then scaled (int8)."""
    from threadpoolctl import threadpool_limits

    L = model_cfg.layers
    G, H, E, V = model_cfg.gate_width, model_cfg.hidden, model_cfg.embed, model_cfg.vocab_size
    shapes = [(G, E)] + [(G, H)] * (2 * L - 1) + [(V, H)]  # inputs and recurrences, then the head
    if rows == 1:
        paths = _decode.blas_paths(L)
        if fmt != "f32":  # (on the kernel threads there are: streaming leaves their number alone)
            for i, (N, K) in enumerate(shapes[1:], 1):
                paths[i] = SPREAD if threads() > 1 and N * K >= SPREAD_FROM else ONE
        return 1, paths
    use_threads(n_threads)
    parts = min(threads(), rows)
    # measured as a step runs them: each among the step's 2L layer products, which share the caches
    paths = [_path(rows, N, K, 2 * L, False) for N, K in shapes[:-1]] + [_path(rows, V, H, 1, False)]
    paths = np.array(paths, np.int64)
    if parts > 1 and (paths.any() or model_cfg.gates * H * H < SHARE_ROWS_BELOW):
        return parts, paths
    threadpool_limits(thread_count(n_threads), user_api="blas")
    return 1, _decode.blas_paths(L)


def decoder_weights(layers, emb, table0, head_weight, head_bias, fmt: str = "f32"):
    """The decoder's Weights (kernels/decoding.py) from each layer's (W_ih, W_hh, b_ih, b_hh), the
    embedding, layer 0's token table ((0, G) for none) and the head: stacked per layer, transposed
    and with padded rows, as cpu/decode.py's products read them; the large matrices in `fmt`
    (kernels/formats.py: f32, bf16, int8)."""
    return _decode.layout(layers, emb, table0, head_weight, head_bias, fmt)


def feed(plan, cell: int, w, h, c, r, prompt) -> None:
    _decode.feed(cell, w, plan[1], h, c, r, prompt)


def decode(plan, cell: int, w, h, c, r, s, uniforms, out) -> None:
    parts, paths = plan
    if parts > 1:
        _decode.decode(cell, w, paths, h, c, r, s, uniforms, out, parts)
    else:
        _decode.decode_rows(cell, w, paths, h, c, r, s, uniforms, out, 0, out.shape[1])
