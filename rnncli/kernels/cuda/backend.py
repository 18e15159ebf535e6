"""The GPU backend: kernels/cpu/backend.py's kernel API, the same names and signatures, on numba.cuda device
arrays. Imported only when CUDA is asked for (rnncli/kernels/device.py), since importing numba.cuda costs
time that CPU users should not pay.

The kernels are in four modules: cuda/arrays.py (device arrays), cuda/ops.py (products, loss,
optimizer), cuda/recur.py
(the recurrences, each layer's whole time loop in one launch) and cuda/decode.py (generation, the
whole token loop in one launch). Their cell math is kernels/cells.py's scalar functions, the very
functions the CPU loops inline, compiled by numba-cuda as device functions.
"""

from __future__ import annotations

import warnings

from numba import cuda as _cuda

from rnncli.kernels.api import API

# the kernel API's names (kernels/api.py), re-exported from the modules that define them
from rnncli.kernels.cuda.arrays import (  # noqa: F401
    Scratch,
    asarray,
    copy,
    copy_into,
    empty,
    to_host,
    transpose_view,
    zeros,
)
from rnncli.kernels.cuda.decode import decode, feed, prepare_decoding  # noqa: F401
from rnncli.kernels.cuda.ops import (  # noqa: F401
    adam_update,
    embedding_backward,
    gather_rows,
    matmul,
    multiply,
    scatter_rows,
    softmax_xent,
    sum_squares,
    weight_grad,
)
from rnncli.kernels.cuda.recur import sequence_backward, sequence_forward, transpose_into  # noqa: F401
from rnncli.kernels.decoding import Weights

NAME = "cuda"

# numba-cuda warns (NumbaPerformanceWarning, on stderr, once per grid size) at every launch of fewer
# than 128 blocks; here such grids are the design (a block per batch row in the recurrences and the
# decoder, one block for one row of generation), so the warning would only interleave with the output.
warnings.filterwarnings("ignore", message=r"Grid size \d+ will likely result in GPU under-utilization")

__all__ = list(API)  # kernels/api.py: the names every backend defines


def scratch_bytes(model_cfg, T: int, B: int, training: bool, n_threads: int | None) -> int:
    """About the device bytes a Scratch keeps for (T, B) windows: each layer's W_hh.T (cuda/recur.py).
    (model.workspace_bytes adds the rest.)"""
    return 4 * model_cfg.layers * model_cfg.hidden * model_cfg.gate_width


def decoder_weights(layers, emb, table0, head_weight, head_bias, fmt: str = "f32") -> Weights:
    """The decoder's Weights (kernels/decoding.py) laid out on the device from device arrays (the
    model's own parameters): each layer's (W_ih, W_hh, b_ih, b_hh) stacked and transposed by
    kernels, as cuda/generate.py's products read them; no host round trip. The CPU's padded row
    layouts and narrow scales are left empty: this decoder reads only the float32 transposes
    (fmt: f32 only; store/load.py refuses narrow weights on the GPU before any of this)."""
    if fmt != "f32":
        raise ValueError(f"the GPU decoder reads float32 weights, not {fmt}")
    L, (G, H), (V, E) = len(layers), layers[0][1].shape, emb.shape
    W_ih0T, W_ihT, W_hhT = empty((E, G)), empty((L - 1, H, G)), empty((L, H, G))
    b_ih, b_hh, W_outT = empty((L, G)), empty((L, G)), empty((H, V))
    transpose_into(layers[0][0], W_ih0T)
    for k, (W_ih, W_hh, bias_ih, bias_hh) in enumerate(layers):
        if k > 0:
            transpose_into(W_ih, W_ihT[k - 1])
        transpose_into(W_hh, W_hhT[k])
        copy_into(b_ih[k], bias_ih)
        copy_into(b_hh[k], bias_hh)
    transpose_into(head_weight, W_outT)
    return Weights(
        table0,
        copy(emb),
        W_ih0T,
        W_ihT,
        W_hhT,
        b_ih,
        b_hh,
        W_outT,
        copy(head_bias),
        empty((0, 0)),
        empty((0, 0, 0)),
        empty((0, 0, 0)),
        empty((0, 0)),
        empty((0, 0)),
        empty((0, 0)),
        empty(0),
    )


def threads() -> int:
    """Host threads the kernels use: none beyond the one that launches them."""
    return 1


def thread_count(n: int | None) -> int:
    return 1


def use_threads(n: int | None) -> None:
    """Nothing to set: the GPU schedules its own threads (--threads matters on the CPU only)."""


def compiles_first(B: int, W_hh) -> bool:
    """(The GPU's kernels are compiled at their first launch, whatever the model.)"""
    return False


def synchronize() -> None:
    """Wait for the kernels launched so far (launches return before their work is done)."""
    _cuda.synchronize()
