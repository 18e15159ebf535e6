"""Generation on the GPU, the host side: the plan (threads a block, device buffers kept between
calls), and feed and decode, each ONE launch of the kernel in cuda/generate.py over every row.

Limits. One block per row is one SM per row: at batch 1 a single SM streams every weight each
token: ~0.8 MB for a 2x128 LSTM (L2-resident), but 12.6 MB for a 2x512, which one SM cannot
stream in 20 us (~60 us or more at ~200 GB/s a SM). 50,000 chars/s there needs several blocks a
row (each owning a slice of the gate columns, its weights kept on chip, h exchanged through
global memory with a grid-wide barrier per layer: a cooperative launch). Occupancy: one block a
row, 256 threads (~165 registers each, no spills), shared memory 8 (T + 80) + 4 (4 T + L H +
L C + E) bytes for T threads (<= 48 KB without an opt-in).
"""

import numpy as np
from numba import cuda, float32, float64, int32, int64
from numba.cuda.core import config as cuda_config

from rnncli.base.errors import RnncliError
from rnncli.kernels.cuda.generate import generate
from rnncli.kernels.sampling import Sampling

SHARED_LIMIT = 48 * 1024  # dynamic shared memory a block may have without an opt-in
# threads per block: the kernel takes ~165 registers a thread (no spills at sm_90), so at most ~390
# threads fit a block's 64K registers; bounding it to 512 made ptxas spill
MAX_THREADS = 256
OFF = Sampling(1.0, 0, 1.0, 0.0, 0.0)  # the sampler settings feed passes (it samples nothing)


class DecodePlan:
    """Threads per block (lowered at the first launch to what the kernel's registers allow) and
    device buffers kept between calls (uniforms, out, top-p weights, empty stand-ins)."""

    def __init__(self, threads: int):
        self.threads, self.fitted, self._buffers = threads, False, {}

    def buffer(self, name: str, shape, dtype):
        a = self._buffers.get(name)
        if a is None or a.shape != tuple(shape) or a.dtype != dtype:
            a = self._buffers[name] = cuda.device_array(shape, dtype)
        return a


def prepare_decoding(
    model_cfg, rows: int, n_threads: int | None, fmt: str = "f32", *, block: int | None = None
) -> DecodePlan:
    """The plan for `rows` rows (one block each; `n_threads`, the CPU's thread count, is unused).
    fmt: f32 only (store/load.py refuses narrow weights on the GPU first). block: threads per
    block, a multiple of 32 (default MAX_THREADS)."""
    if fmt != "f32":
        raise ValueError(f"the GPU decoder reads float32 weights, not {fmt}")
    nt = block or MAX_THREADS
    if nt % 32 or not 32 <= nt <= 1024:
        raise ValueError(f"threads per block must be a multiple of 32 in [32, 1024], not {nt}")
    return DecodePlan(nt)


def _launch(plan: DecodePlan, cell, w, h, c, r, prompt, s, uniforms, out) -> None:
    """The kernel over every row: a block each, shared memory as generate lays it out."""
    args = (
        int(cell),
        prompt,
        float(s.penalty),
        int(s.top_k),
        float(s.top_p),
        float(s.min_p),
        float(s.temperature),
        uniforms,
        out,
        w.table0,
        w.emb,
        w.W_ih0T,
        w.W_ihT,
        w.W_hhT,
        w.b_ih,
        w.b_hh,
        w.W_outT,
        w.b_out,
        h,
        c,
        r.toks,
        r.gx,
        r.gh,
        r.logits,
        r.logits.view(np.int32),
        r.probs,
        plan.buffer(f"wts {h.shape[1]}", r.logits.shape, np.int64),
        r.recent,
        r.counts,
        r.seen,
    )
    if not plan.fitted:
        if not cuda_config.ENABLE_CUDASIM:  # (the simulator knows no registers)
            # the overload the launch below uses (loaded from the disk cache when there): specialize()
            # would compile the kernel a second time, ~30 s, never cached, in every process
            compiled = generate.compile(tuple(generate.typeof_pyval(a) for a in args))
            plan.threads = min(plan.threads, compiled.max_threads_per_block // 32 * 32)
        plan.fitted = True
    nt, (L, B, H), C, E = plan.threads, h.shape, c.shape[2], w.emb.shape[1]
    nbytes = 8 * (nt + 80) + 4 * (4 * nt + L * (H + C) + E)
    if nbytes > SHARED_LIMIT:
        raise RnncliError(
            f"the GPU decoder keeps h and c in shared memory: {nbytes} bytes for {L}x{H} at {nt} "
            f"threads a block, over {SHARED_LIMIT}; use --device cpu"
        )
    generate[B, nt, 0, nbytes](*args)


def feed(plan: DecodePlan, cell: int, w, h, c, r, prompt) -> None:
    """Feed prompt ids (P,) (host or device) to every row, one token a step, in one launch."""
    if len(prompt) == 0:
        return
    if isinstance(prompt, np.ndarray):
        prompt = cuda.to_device(np.ascontiguousarray(prompt, np.int64))
    B = h.shape[1]
    _launch(
        plan,
        cell,
        w,
        h,
        c,
        r,
        prompt,
        OFF,
        plan.buffer("no u", (0, B), np.float64),
        plan.buffer("no out", (0, B), np.int64),
    )


def decode(plan: DecodePlan, cell: int, w, h, c, r, s, uniforms, out) -> None:
    """Sample out.shape[0] tokens for every row (out (n, B) int64 on the host, filled; uniforms
    (n, B) float64 on the host), as kernels/decode.decode does, in one launch."""
    n, B = out.shape
    if n == 0:
        return
    d_u = plan.buffer("uniforms", (n, B), np.float64)
    d_u.copy_to_device(np.ascontiguousarray(uniforms, np.float64))
    d_out = plan.buffer("out", (n, B), np.int64)
    _launch(plan, cell, w, h, c, r, plan.buffer("no prompt", (0,), np.int64), s, d_u, d_out)
    d_out.copy_to_host(out)


def _types():
    """One signature of the kernel, as decode and feed launch it (C-contiguous arrays)."""
    f1, f2, f3, i1, i2 = float32[::1], float32[:, ::1], float32[:, :, ::1], int64[::1], int64[:, ::1]
    f = float64
    return (
        int64,
        i1,
        f,
        int64,
        f,
        f,
        f,
        float64[:, ::1],
        i2,
        f2,
        f2,
        f2,
        f3,
        f3,
        f2,
        f2,
        f2,
        f1,
        f3,
        f3,
        i1,
        f2,
        f2,
        f2,
        int32[:, ::1],
        f2,
        i2,
        i2,
        int32[:, ::1],
        i1,
    )


PTX = [("decode", generate.py_func, _types())]
