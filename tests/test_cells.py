"""What a cell must define, checked for every cell of kernels/cells.py's table: its row (gates, `act`
slots, cell state, whether the recurrent gradient differs), agreeing with the settings; its forward
and backward for one hidden unit, which the GPU's kernels run, against the float64 reference; and
the CPU's step loops, which write the same math in vectorizable loops, against those functions."""

import numpy as np
import pytest

from rnncli.kernels import cells, reference
from rnncli.model.config import CELLS, GATES, ModelConfig

H, I = 5, 3  # hidden units, input width


def test_the_table_has_a_row_for_every_cell_the_settings_know():
    assert cells.NAMES == CELLS  # a cell's code is its index in both
    for column in (cells.GATES, cells.ACTS, cells.CSTATE, cells.APART):
        assert len(column) == len(CELLS)
    for code, name in enumerate(CELLS):
        cfg = ModelConfig(vocab_size=7, cell=name, hidden=H)
        assert cells.GATES[code] == GATES[name] == cfg.gates
        assert cfg.act_width == cells.ACTS[code] * H and cfg.cstate_width == cells.CSTATE[code] * H
        assert 1 <= cells.GATES[code] <= cells.MAX_GATES and cells.ACTS[code] <= cells.MAX_GATES
        for part in ("forward", "backward"):
            assert callable(getattr(cells, f"{name}_{part}", None)), f"cells.py defines no {name}_{part}"


def case(cell: str, seed: int):
    """One row: the input x (1, I), the state h, c (1, H), a layer's weights, float32 values in float64."""
    rng = np.random.default_rng(seed)
    G = GATES[cell] * H
    f = lambda *shape: rng.uniform(-1, 1, shape).astype(np.float32).astype(np.float64)  # noqa: E731
    return f(1, I), f(1, H), f(1, H), f(G, I), f(G, H), f(G), f(G)


def parts(x, h, W_ih, W_hh, b_ih, b_hh):
    """Gate pre-activations in the three float32 parts the per-unit functions take, (G,) each."""
    f32 = np.float32
    return (x @ W_ih.T + b_ih)[0].astype(f32), (h @ W_hh.T)[0].astype(f32), b_hh.astype(f32)


def slots(values, j, n):
    """Unit j's n slots of (k * H + j)-laid-out values, padded with zeros to MAX_GATES."""
    return [np.float32(values[k * H + j]) if k < n else np.float32(0.0) for k in range(cells.MAX_GATES)]


def run_unit_forward(code, x, h, c, W_ih, W_hh, b_ih, b_hh):
    """Every unit through the cell's forward: h, c (H,), act (ACTS * H,) in the table's layout."""
    gx, gh, b = parts(x, h, W_ih, W_hh, b_ih, b_hh)
    fn, n = getattr(cells, f"{CELLS[code]}_forward"), cells.GATES[code]
    out_h, out_c, act = np.zeros(H), np.zeros(H), np.zeros(cells.MAX_GATES * H)
    for j in range(H):
        args = (*slots(gx, j, n), *slots(gh, j, n), *slots(b, j, n), np.float32(h[0, j]), np.float32(c[0, j]))
        got = fn(*args)
        assert got == pytest.approx(cells.unit_forward(code, *args), abs=1e-6)
        out_h[j], out_c[j] = got[0], got[1]
        act[j::H] = got[2:]
    return out_h, out_c, act[: cells.ACTS[code] * H]


@pytest.mark.parametrize("code", range(len(CELLS)))
@pytest.mark.parametrize("seed", [0, 1])
def test_unit_forward_matches_the_reference(code, seed):
    cell = CELLS[code]
    x, h, c, W_ih, W_hh, b_ih, b_hh = case(cell, seed)
    h_new, c_new, saved = reference.cell_forward(cell, x, h, c, W_ih, W_hh, b_ih, b_hh)
    got_h, got_c, act = run_unit_forward(code, x, h, c, W_ih, W_hh, b_ih, b_hh)
    np.testing.assert_allclose(got_h, h_new[0], atol=2e-6)
    if cells.CSTATE[code]:
        np.testing.assert_allclose(got_c, c_new[0], atol=2e-6)
    kept = {"rnn": (), "gru": saved[2:6], "lstm": saved[3:7]}[cell]  # gru r, z, n, hn; lstm i, f, g, o
    np.testing.assert_allclose(act, np.concatenate([k[0] for k in kept]) if kept else act[:0], atol=2e-6)


@pytest.mark.parametrize("code", range(len(CELLS)))
@pytest.mark.parametrize("seed", [0, 1])
def test_unit_backward_matches_the_reference(code, seed):
    """reference.cell_backward on one row leaves the pre-activation gradients in the bias gradients
    (da_x: b_ih's, da_h: b_hh's) and returns dh_prev = da_h W_hh + the bypass, and dc_prev."""
    cell = CELLS[code]
    x, h, c, W_ih, W_hh, b_ih, b_hh = case(cell, seed)
    h_new, c_new, saved = reference.cell_forward(cell, x, h, c, W_ih, W_hh, b_ih, b_hh)
    rng = np.random.default_rng(seed + 10)
    dh, dc = (rng.uniform(-1, 1, (1, H)).astype(np.float32).astype(np.float64) for _ in range(2))
    grads = {
        f"rnn.{n}_l0": np.zeros_like(w)
        for n, w in (("weight_ih", W_ih), ("weight_hh", W_hh), ("bias_ih", b_ih), ("bias_hh", b_hh))
    }
    _, dh_prev, dc_prev = reference.cell_backward(cell, dh, dc, saved, W_ih, W_hh, grads, 0)
    da_x, da_h = grads["rnn.bias_ih_l0"], grads["rnn.bias_hh_l0"]
    bypass = dh_prev[0] - da_h @ W_hh

    _, _, act = run_unit_forward(code, x, h, c, W_ih, W_hh, b_ih, b_hh)
    n, A = cells.GATES[code], cells.ACTS[code]
    f32 = np.float32
    for j in range(H):
        args = (
            f32(dh[0, j]),
            f32(dc[0, j]),
            f32(h[0, j]),
            f32(h_new[0, j]),
            f32(c[0, j]),
            f32(c_new[0, j]),
            *slots(act, j, A),
        )
        d = cells.unit_backward(code, *args)
        assert d == pytest.approx(getattr(cells, f"{cell}_backward")(*args), abs=1e-6)
        for k in range(n):
            assert d[k] == pytest.approx(da_x[k * H + j], abs=1e-5), ("dx", k, j)
            assert d[4 + k] == pytest.approx(da_h[k * H + j], abs=1e-5), ("dg", k, j)
        assert d[8] == pytest.approx(bypass[j], abs=1e-5)
        if cells.CSTATE[code]:
            assert d[9] == pytest.approx(dc_prev[0, j], abs=1e-5)


@pytest.mark.parametrize("code", range(len(CELLS)))
def test_the_cpu_step_loops_agree_with_the_unit_functions(code):
    """forward_step and backward_step write the table's layout a second time (for speed): on a
    batch of rows they give what the per-unit functions give, to float32 rounding."""
    B = 3
    rng = np.random.default_rng(code)
    G, A, C = cells.GATES[code] * H, cells.ACTS[code] * H, cells.CSTATE[code] * H
    f = lambda *shape: rng.uniform(-1, 1, shape).astype(np.float32)  # noqa: E731
    gx, gh, b_hh, h_prev, c_prev = f(B, G), f(B, G), f(G), f(B, H), f(B, H)
    h, c, act = np.zeros((B, H), np.float32), np.zeros((B, C), np.float32), np.zeros((B, A), np.float32)
    cells.forward_step(code, gx, gh.copy(), b_hh, h_prev, c_prev[:, :C], h, c, act)
    dh_out, dh_next, dc_next = f(B, H), f(B, H), f(B, C)
    dgx = np.zeros((B, G), np.float32)
    dgh = np.zeros((B, G), np.float32) if cells.APART[code] else dgx
    dh_in, dc_in = dh_next.copy(), dc_next.copy()
    cells.backward_step(code, dh_out, dh_next, dc_next, h_prev, h, c_prev[:, :C], c, act, dgx, dgh)
    n = cells.GATES[code]
    for b in range(B):
        for j in range(H):
            cp = c_prev[b, j] if C else np.float32(0.0)
            want = cells.unit_forward(
                code, *slots(gx[b], j, n), *slots(gh[b], j, n), *slots(b_hh, j, n), h_prev[b, j], cp
            )
            assert h[b, j] == pytest.approx(want[0], abs=1e-6)
            assert (c[b, j] if C else 0.0) == pytest.approx(want[1], abs=1e-6)
            assert list(act[b, j::H]) == pytest.approx(list(want[2 : 2 + cells.ACTS[code]]), abs=1e-6)
            d = cells.unit_backward(
                code,
                dh_in[b, j] + dh_out[b, j],
                dc_in[b, j] if C else np.float32(0.0),
                h_prev[b, j],
                h[b, j],
                cp,
                c[b, j] if C else np.float32(0.0),
                *slots(act[b], j, cells.ACTS[code]),
            )
            assert list(dgx[b, j::H]) == pytest.approx(list(d[:n]), abs=1e-6)
            assert list(dgh[b, j::H]) == pytest.approx(list(d[4 : 4 + n]), abs=1e-6)
            assert dh_next[b, j] == pytest.approx(d[8], abs=1e-6)
            if C:
                assert dc_next[b, j] == pytest.approx(d[9], abs=1e-6)
