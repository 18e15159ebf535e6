"""The float64 reference against central finite differences, for every cell and depth."""

import numpy as np
import pytest

from rnncli.kernels import reference
from tests.helpers import CELLS, as64, random_case


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers,dropout", [(1, 0.0), (2, 0.3), (3, 0.0)])
def test_gradients_match_finite_differences(cell, layers, dropout):
    params, ids, targets, h0, c0, masks = random_case(
        cell, V=7, E=4, H=5, L=layers, T=4, B=2, dropout=dropout
    )
    P = as64(params)
    h0, c0 = h0.astype(np.float64), c0.astype(np.float64)
    m64 = None if masks is None else [m.astype(np.float64) for m in masks]
    grads = reference.forward_backward(P, cell, ids, targets, h0, c0, m64)["grads"]
    rng = np.random.default_rng(1)
    eps = 1e-6
    for name, value in P.items():
        flat = value.reshape(-1)
        for idx in rng.choice(flat.size, size=min(flat.size, 6), replace=False):
            old = flat[idx]
            flat[idx] = old + eps
            up = reference.forward_backward(P, cell, ids, targets, h0, c0, m64)["loss"]
            flat[idx] = old - eps
            down = reference.forward_backward(P, cell, ids, targets, h0, c0, m64)["loss"]
            flat[idx] = old
            numeric = (up - down) / (2 * eps)
            assert abs(numeric - grads[name].reshape(-1)[idx]) < 1e-7 + 1e-5 * abs(numeric), (name, idx)


def test_adam_step_matches_the_textbook_update():
    P = {"w": np.array([1.0, -2.0])}
    G = {"w": np.array([0.5, 0.1])}
    m, v = {"w": np.zeros(2)}, {"w": np.zeros(2)}
    reference.adam_step(P, G, m, v, step=1, lr=0.1)
    # first step of Adam moves each weight by lr * sign(g) (up to eps)
    np.testing.assert_allclose(P["w"], [0.9, -2.1], atol=1e-6)


def test_clipping_scales_to_the_norm():
    P = {"w": np.zeros(2)}
    G = {"w": np.array([3.0, 4.0])}
    m, v = {"w": np.zeros(2)}, {"w": np.zeros(2)}
    norm = reference.adam_step(P, G, m, v, step=1, lr=0.1, clip=1.0)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(m["w"], 0.1 * np.array([0.6, 0.8]), rtol=1e-5)
