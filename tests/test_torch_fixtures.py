"""Both the reference and the kernels against fixtures made once with PyTorch 2.13 (see fixtures/)."""

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from rnncli.kernels import reference
from rnncli.model.config import ModelConfig, TrainConfig
from rnncli.model.model import Model
from rnncli.model.optim import Adam
from rnncli.model.params import Params
from tests.helpers import CELLS, as64, assert_close, run_kernels, run_reference

FIXTURES = Path(__file__).parent / "fixtures"


def load(cell):
    f = load_file(FIXTURES / f"torch_{cell}.safetensors")
    V, E = f["init.embedding.weight"].shape
    H = f["init.rnn.weight_hh_l0"].shape[1]
    L = sum(k.startswith("init.rnn.weight_hh_l") for k in f)
    params = Params(ModelConfig(vocab_size=V, cell=cell, layers=L, hidden=H, embed=E)).load(f, "init.")
    return f, params, (f["ids"], f["targets"], f["h0"], f["c0"])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("impl", ["kernels", "reference"])
def test_logits_loss_and_gradients_match_pytorch(cell, impl):
    f, params, window = load(cell)
    got = (run_kernels if impl == "kernels" else run_reference)(params, *window)
    assert_close(got["logits"], f["logits"], atol=1e-5, what="logits")
    assert got["loss"] == pytest.approx(float(f["loss"][0]), rel=1e-5)
    for name in params.names():
        assert_close(got["grads"][name], f["grad." + name], atol=1e-6, rtol=1e-4, what=name)


@pytest.mark.parametrize("cell", CELLS)
def test_adam_with_clipping_matches_pytorch(cell):
    f, params, (ids, targets, h0, c0) = load(cell)
    cfg = TrainConfig(lr=0.01, clip=0.5)
    model, grads, adam = Model(params), params.zeros_like(), Adam(params.data.size, cfg)
    P = as64(params)
    m = {k: np.zeros_like(v) for k, v in P.items()}
    v = {k: np.zeros_like(x) for k, x in P.items()}
    for step in range(10):
        loss = model.loss_and_grads(ids, targets, h0, c0, grads)
        adam.step(params.data, grads.data, cfg.lr)
        ref = reference.forward_backward(P, cell, ids, targets, h0.astype(float), c0.astype(float))
        reference.adam_step(P, ref["grads"], m, v, step + 1, cfg.lr, clip=cfg.clip)
        assert loss == pytest.approx(float(f["adam_losses"][step]), rel=1e-5), f"kernels, step {step}"
        assert ref["loss"] == pytest.approx(float(f["adam_losses"][step]), rel=1e-6), (
            f"reference, step {step}"
        )
    for name in params.names():
        assert_close(params[name], f["final." + name], atol=2e-5, what=name)
        assert_close(P[name], f["final." + name], atol=1e-5, what=name)  # torch ran in float32
