"""The CUDA recurrences (kernels/cuda/recur.py) in the simulator, against the float64 reference:
forward hs/cs/act and backward dgx/dgh/dh_0/dc_0 for every cell, on tiny shapes that cover an odd
H, a batch that is not a multiple of the rows per block, 1..4 rows per block and 1..8 k-slices."""

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("simulator tests: run with NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)
pytestmark = pytest.mark.cuda

import numpy as np  # noqa: E402
from numba import cuda  # noqa: E402

from rnncli.base.errors import RnncliError  # noqa: E402
from rnncli.kernels import reference  # noqa: E402
from rnncli.kernels.cuda import recur as K  # noqa: E402

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
CODE = {"rnn": 0, "gru": 1, "lstm": 2}
TOL = dict(rtol=1e-5, atol=1e-5)


def problem(cell, T, B, H, seed):
    """Random float32 inputs of one layer: gx, W_hh, b_hh, h_0, c_0 and the gradients from above."""
    rng = np.random.default_rng(seed)
    G = GATES[cell] * H
    f = lambda *shape, s=1.0: (s * rng.standard_normal(shape)).astype(np.float32)  # noqa: E731
    return dict(
        gx=f(T, B, G),
        W_hh=f(G, H, s=0.4),
        b_hh=f(G, s=0.3),
        h0=f(B, H, s=0.5),
        c0=f(B, H, s=0.5) if cell == "lstm" else np.zeros((B, H), np.float32),
        dhs=f(T, B, H),
        dh=f(B, H, s=0.3),
        dc=f(B, H, s=0.3),
    )


def oracle(cell, p):
    """reference.cell_forward / cell_backward in float64 with W_ih = I, b_ih = 0 (so that the input
    projection is gx itself): hs, cs, act, dgx, dgh, dh_0, dc_0."""
    T, B, G = p["gx"].shape
    H = p["W_hh"].shape[1]
    eye, W, b = np.eye(G), p["W_hh"].astype(np.float64), p["b_hh"].astype(np.float64)
    h, c = p["h0"].astype(np.float64), p["c0"].astype(np.float64)
    hs, cs, act, saved = [h], [c], [], []
    for t in range(T):
        h, c, s = reference.cell_forward(cell, p["gx"][t].astype(np.float64), h, c, eye, W, np.zeros(G), b)
        hs.append(h), cs.append(c), saved.append(s)
        act.append(
            np.concatenate(s[2:6] if cell == "gru" else s[3:7], axis=1) if cell != "rnn" else np.zeros((B, 0))
        )
    grads = {f"rnn.{n}_l0": 0.0 for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}  # not checked
    dh, dc = p["dh"].astype(np.float64), p["dc"].astype(np.float64)
    dgx, dgh = np.zeros((T, B, G)), np.zeros((T, B, G))
    for t in reversed(range(T)):
        dgx[t], dh, dc = reference.cell_backward(cell, p["dhs"][t] + dh, dc, saved[t], eye, W, grads, 0)
        dgh[t] = dgx[t]
        if cell == "gru":
            dgh[t, :, 2 * H :] *= saved[t][2]  # the n block reaches W_hh through r
    return dict(hs=np.array(hs), cs=np.array(cs), act=np.array(act), dgx=dgx, dgh=dgh, dh=dh, dc=dc)


def device_state(cell, p):
    """The device arrays the kernels write into, as the model allocates them."""
    T, B, G = p["gx"].shape
    H = p["h0"].shape[1]
    C, A = (H if cell == "lstm" else 0), (0 if cell == "rnn" else 4 * H)
    hs, cs = np.zeros((T + 1, B, H), np.float32), np.zeros((T + 1, B, C), np.float32)
    hs[0], cs[0] = p["h0"], p["c0"][:, :C]
    return cuda.to_device(hs), cuda.to_device(cs), cuda.to_device(np.full((T, B, A), np.nan, np.float32))


def run_backward(cell, p, ref, R, S, threads, same):
    """The backward kernel on the reference's (float32-rounded) forward values."""
    T, B, G = p["gx"].shape
    f32 = lambda a: cuda.to_device(np.ascontiguousarray(a, np.float32))  # noqa: E731
    C = p["h0"].shape[1] if cell == "lstm" else 0
    hs, cs, act = f32(ref["hs"]), f32(ref["cs"][..., :C]), f32(ref["act"])
    dh, dc = f32(p["dh"]), f32(p["dc"])
    dgx = cuda.to_device(np.full((T, B, G), np.nan, np.float32))
    dgh = dgx if same else cuda.to_device(np.full((T, B, G), np.nan, np.float32))
    K._launch_backward(
        CODE[cell], f32(p["W_hh"]), hs, cs, act, f32(p["dhs"]), dh, dc, dgx, dgh, R, S, threads
    )
    return dgx.copy_to_host(), dgh.copy_to_host(), dh.copy_to_host(), dc.copy_to_host()


# cell, T, B, H, R, S: odd H, B not a multiple of R (a last block with fewer rows), 3 rows (the
# fourth sum repeating the third), more rows per block than the batch has, 1..8 slices, sums long
# enough for the unrolled passes (8 terms for one row, 4 for several) and their remainders
CASES = [
    ("rnn", 3, 3, 7, 2, 4),
    ("rnn", 1, 1, 5, 1, 1),
    ("rnn", 2, 1, 17, 1, 1),
    ("rnn", 2, 5, 9, 4, 1),
    ("gru", 3, 3, 5, 2, 2),
    ("gru", 2, 3, 8, 3, 1),
    ("gru", 2, 2, 9, 1, 2),
    ("lstm", 3, 3, 5, 2, 8),
    ("lstm", 4, 2, 9, 4, 2),
    ("lstm", 2, 3, 6, 1, 1),
]


@pytest.mark.parametrize("cell,T,B,H,R,S", CASES)
def test_forward_matches_reference(cell, T, B, H, R, S):
    p = problem(cell, T, B, H, seed=T * 100 + B * 10 + H)
    ref = oracle(cell, p)
    G = GATES[cell] * H
    hs, cs, act = device_state(cell, p)
    WT = cuda.to_device(np.ascontiguousarray(p["W_hh"].T))
    K._launch_forward(
        CODE[cell],
        cuda.to_device(p["gx"]),
        WT,
        cuda.to_device(p["b_hh"]),
        hs,
        cs,
        act,
        R,
        S,
        S * min(G, K.THREADS // S),
    )
    np.testing.assert_allclose(hs.copy_to_host(), ref["hs"], **TOL)
    if cell == "lstm":
        np.testing.assert_allclose(cs.copy_to_host(), ref["cs"], **TOL)
    np.testing.assert_allclose(act.copy_to_host(), ref["act"], **TOL)


@pytest.mark.parametrize("cell,T,B,H,R,S", CASES)
def test_backward_matches_reference(cell, T, B, H, R, S):
    p = problem(cell, T, B, H, seed=T * 100 + B * 10 + H)
    ref = oracle(cell, p)
    dgx, dgh, dh, dc = run_backward(cell, p, ref, R, S, S * min(H, K.THREADS // S), same=cell != "gru")
    np.testing.assert_allclose(dgx, ref["dgx"], **TOL)
    np.testing.assert_allclose(dgh, ref["dgh"], **TOL)
    np.testing.assert_allclose(dh, ref["dh"], **TOL)
    if cell == "lstm":
        np.testing.assert_allclose(dc, ref["dc"], **TOL)


def test_backward_two_arrays_for_rnn_and_lstm():
    """dgx and dgh may also be two arrays for rnn and lstm: both get the gradients."""
    for cell in ("rnn", "lstm"):
        p = problem(cell, 2, 2, 5, seed=7)
        ref = oracle(cell, p)
        dgx, dgh, _, _ = run_backward(cell, p, ref, 2, 2, 10, same=False)
        np.testing.assert_allclose(dgx, ref["dgx"], **TOL)
        np.testing.assert_allclose(dgh, ref["dgh"], **TOL)


def test_public_api_refreshes_the_transpose():
    """sequence_forward / sequence_backward through the Scratch: the second forward, with new
    weights, must not reuse the first one's W_hh.T; backward then matches the reference."""

    class Scratch:  # cuda_ops.Scratch's part that cuda_recur uses
        store = {}

    scratch, cell, H = Scratch(), "lstm", 6
    for seed in (1, 2):
        p = problem(cell, 2, 3, H, seed=seed)
        ref = oracle(cell, p)
        hs, cs, act = device_state(cell, p)
        W, gx = cuda.to_device(p["W_hh"]), cuda.to_device(p["gx"])
        K.sequence_forward(
            scratch,
            0,
            CODE[cell],
            gx,
            W,
            cuda.to_device(p["b_hh"]),
            hs,
            cs,
            act,
            cuda.device_array((3, 4 * H), np.float32),
        )
        np.testing.assert_allclose(hs.copy_to_host(), ref["hs"], **TOL)
        np.testing.assert_allclose(act.copy_to_host(), ref["act"], **TOL)
    assert list(scratch.store) == [("W_hhT", 0)]
    dh, dc, dg = (
        cuda.to_device(p["dh"]),
        cuda.to_device(p["dc"]),
        cuda.device_array((2, 3, 4 * H), np.float32),
    )
    K.sequence_backward(
        scratch,
        0,
        CODE[cell],
        W,
        hs,
        cs,
        act,
        cuda.to_device(p["dhs"]),
        dh,
        dc,
        dg,
        dg,
        cuda.device_array((3, H), np.float32),
    )
    np.testing.assert_allclose(dg.copy_to_host(), ref["dgx"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dh.copy_to_host(), ref["dh"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dc.copy_to_host(), ref["dc"], rtol=1e-4, atol=1e-5)


def test_transpose_tiles():
    W = np.arange(37 * 70, dtype=np.float32).reshape(37, 70)
    WT = cuda.device_array((70, 37), np.float32)
    K.transpose_into(cuda.to_device(W), WT)
    np.testing.assert_array_equal(WT.copy_to_host(), W.T)


def test_plan_fits_shared_memory():
    """Rows per block fall, then slices, to keep a block within 48 KiB; too large an H is refused."""
    for cols, fixed, per in ((2048, 512, 2048), (512, 2048, 512), (20, 5, 20), (4096, 1024, 4096)):
        R, S, threads = K.plan(4000, cols, fixed, per)
        assert 1 <= R <= 4 and 1 <= S <= 8 and threads <= K.THREADS and threads % S == 0
        assert 4 * R * (fixed + S * per) <= K.SHARED
    assert K.plan(10, 20, 5, 20)[:2] == (1, 8)
    with pytest.raises(RnncliError, match="--hidden is too large"):
        K.plan(1, 4 * 3000, 3000, 4 * 3000)
