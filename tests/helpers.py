"""Shared test helpers: random small problems and the two ways of solving them (kernels, reference)."""

from __future__ import annotations

import numpy as np

from rnncli.kernels import reference
from rnncli.model.config import ModelConfig
from rnncli.model.model import Model
from rnncli.model.params import Params, init_params

CELLS = ("rnn", "gru", "lstm")


def random_case(cell, V=13, E=5, H=7, L=2, T=6, B=3, seed=0, dropout=0.0):
    """A model with PyTorch-style random weights, a window of ids and targets, random initial states
    and, with dropout > 0, inverted-dropout masks."""
    rng = np.random.default_rng(seed)
    cfg = ModelConfig(vocab_size=V, cell=cell, layers=L, hidden=H, embed=E)
    params = init_params(cfg, rng)
    ids = rng.integers(0, V, (T, B))
    targets = rng.integers(0, V, (T, B))
    h0 = (0.5 * rng.standard_normal((L, B, H))).astype(np.float32)
    c0 = (0.5 * rng.standard_normal((L, B, H))).astype(np.float32)
    if cell != "lstm":
        c0[...] = 0.0
    masks = None
    if dropout > 0:
        masks = [
            ((rng.random((T, B, H)) >= dropout) / (1 - dropout)).astype(np.float32) for _ in range(L - 1)
        ]
    return params, ids, targets, h0, c0, masks


def run_kernels(params: Params, ids, targets, h0, c0, masks=None) -> dict:
    model = Model(params)
    grads = params.zeros_like()
    loss = model.loss_and_grads(ids, targets, h0, c0, grads, masks)
    h_n, c_n = model.final_state(*ids.shape)
    logits = Model(params).logits(ids, h0, c0).copy() if masks is None else None
    return {
        "loss": loss,
        "logits": logits,
        "h_n": h_n,
        "c_n": c_n,
        "grads": {k: v.copy() for k, v in grads.views.items()},
    }


def as64(params: Params) -> dict:
    return {k: v.astype(np.float64) for k, v in params.views.items()}


def run_reference(params: Params, ids, targets, h0, c0, masks=None) -> dict:
    m64 = None if masks is None else [m.astype(np.float64) for m in masks]
    return reference.forward_backward(
        as64(params), params.cfg.cell, ids, targets, h0.astype(np.float64), c0.astype(np.float64), m64
    )


def assert_close(actual, expected, atol, rtol=0.0, what=""):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    err = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.size else ()
    assert np.all(err <= bound), (
        f"{what}: worst error {err[worst]:.3g} at {worst} "
        f"(actual {actual[worst]}, expected {expected[worst]})"
    )


class FakeClock:
    """Seconds that pass only when a test says so (`advance`): time budgets tested without a real clock."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
