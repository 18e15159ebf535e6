"""The formats generation can read its large matrices in (`--weights f32|bf16|int8`), in NumPy, no numba:
what is stored narrow, how a float32 matrix becomes its narrow form and back, and what it takes.

bf16 keeps the upper 16 bits of each float32 (rounded to the nearest, ties to even), so widening it
is a shift into the upper half of a 32-bit word: exact, the same 8-bit exponent, 8 bits of
mantissa. int8 keeps each row as integers in -127..127 times one float32 scale per row (the row's
largest magnitude / 127), so that a product in the dot-product layout (rows = outputs) applies the
scale once per output: out[j] = scale[j] * sum_k x[k] q[j, k]. The error is at most half a step,
scale[j] / 2.

What goes narrow: the matrices a generated token reads in full (every layer's W_hh, the W_ih of
layers past the first, the head). The embedding (a token reads one row of it), layer 0's token table
and W_ih, and the biases stay float32. A model loaded in a format has these matrices round-tripped
(narrowed and widened back to float32, once), so that scoring reports the loss of the very model the
compressed decoder runs (store/load.py); the CPU decoder keeps them narrow (kernels/cpu/decode.py).
"""

from __future__ import annotations

import numpy as np

from rnncli.base.errors import RnncliError

FORMATS = ("f32", "bf16", "int8")
BYTES = {"f32": 4, "bf16": 2, "int8": 1}  # per weight; int8 adds a float32 scale per row


def check(fmt: str) -> str:
    if fmt not in FORMATS:
        raise RnncliError(f"--weights takes {', '.join(FORMATS)}, not {fmt!r}")
    return fmt


def narrow_names(layers: int) -> list[str]:
    """The checkpoint tensors a format other than f32 stores narrow."""
    return (
        [f"rnn.weight_hh_l{k}" for k in range(layers)]
        + [f"rnn.weight_ih_l{k}" for k in range(1, layers)]
        + ["head.weight"]
    )


def to_bf16(W: np.ndarray) -> np.ndarray:
    """The upper 16 bits of each float32, rounded to the nearest bf16 (ties to the even one), as uint16."""
    u = np.ascontiguousarray(W, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16(Q: np.ndarray) -> np.ndarray:
    return (Q.astype(np.uint32) << 16).view(np.float32)


def to_int8(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q, scale): W (..., N, K) as integers q in -127..127 and one scale per row (..., N), with
    W ~ q * scale[..., None] to within scale / 2. An all-zero row gets scale 1."""
    W = np.asarray(W, np.float32)
    scale = (np.abs(W).max(axis=-1, initial=0.0) / np.float32(127)).astype(np.float32)
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(W / scale[..., None]), -127, 127).astype(np.int8)
    return q, scale


def from_int8(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * scale[..., None]


def compress(W: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(the narrow matrix, its per-row scales or None) of W (..., N, K) in `fmt`; f32: W itself."""
    if fmt == "bf16":
        return to_bf16(W), None
    if fmt == "int8":
        return to_int8(W)
    return np.asarray(W, np.float32), None


def widen(Q: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """compress's inverse: float32 from a narrow matrix (and its scales, for int8; without them, the
    int8 values themselves, as the decoder's products read them before scaling each output)."""
    if Q.dtype == np.uint16:
        return from_bf16(Q)
    if Q.dtype == np.int8:
        return from_int8(Q, scale) if scale is not None else Q.astype(np.float32)
    return Q


def round_trip(W: np.ndarray, fmt: str) -> np.ndarray:
    """W as the format keeps it, widened back to float32."""
    return widen(*compress(W, fmt))


def round_trip_tensors(tensors: dict, layers: int, fmt: str) -> dict:
    """A checkpoint's tensors with those stored narrow (narrow_names) round-tripped through `fmt`."""
    if fmt == "f32":
        return tensors
    narrow = set(narrow_names(layers))
    return {k: round_trip(v, fmt) if k in narrow else v for k, v in tensors.items()}


def matrix_bytes(rows: int, cols: int, fmt: str) -> int:
    """The bytes a (rows, cols) matrix takes in `fmt`, its scales included: what a product reads."""
    return rows * cols * BYTES[fmt] + (4 * rows if fmt == "int8" else 0)
