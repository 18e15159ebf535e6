"""The whole model on the GPU backend (under the simulator): the same losses and gradients as the
float64 reference, training that moves between devices mid-run, scoring and greedy generation that
match the CPU's. Tiny shapes: every simulated thread is a Python thread."""

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("simulator tests: run with NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)
pytestmark = pytest.mark.cuda

import numpy as np  # noqa: E402

from rnncli.kernels.device import backend  # noqa: E402
from rnncli.model.config import SampleConfig, TrainConfig  # noqa: E402
from rnncli.model.model import Model  # noqa: E402
from rnncli.model.optim import Adam  # noqa: E402
from tests.helpers import CELLS, assert_close, random_case, run_reference  # noqa: E402

K = backend("cuda")
CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "sample_corpora", "forecasts.txt")


def test_auto_picks_the_gpu_under_the_simulator():
    assert K.NAME == "cuda" and backend("auto").NAME == "cuda" and backend("cpu").NAME == "cpu"


@pytest.mark.parametrize("cell", CELLS)
def test_loss_and_gradients_match_the_reference(cell):
    params, ids, targets, h0, c0, masks = random_case(
        cell, V=11, E=3, H=5, L=2, T=3, B=2, seed=4, dropout=0.25
    )
    model = Model(params, K)
    grads = model.params.zeros_like()
    loss = model.loss_and_grads(ids, targets, h0, c0, grads, np.stack(masks))
    h_n, c_n = (K.to_host(a) for a in model.final_state(*ids.shape))
    want = run_reference(params, ids, targets, h0, c0, masks)
    assert loss == pytest.approx(want["loss"], rel=1e-5)
    assert_close(h_n, want["h_n"], atol=2e-6, what="h_n")
    if cell == "lstm":
        assert_close(c_n, want["c_n"], atol=2e-6, what="c_n")
    got = grads.host()
    for name, g in want["grads"].items():
        assert_close(got[name], g, atol=2e-5 * max(np.abs(g).max(), 1e-3), what=name)


def test_adam_matches_the_cpu():
    params, ids, targets, h0, c0, _ = random_case("gru", V=11, E=3, H=5, L=1, T=2, B=2, seed=5)
    cfg = TrainConfig(lr=0.01, clip=0.5)
    inputs = [a.copy() for a in (params.data, ids, targets, h0, c0)]
    sides = []
    for k in (backend("cpu"), K):
        model = Model(params.copy(), k)
        grads, adam = model.params.zeros_like(), Adam(params.data.size, cfg, k)
        losses = []
        for _ in range(2):  # (the moments' second update: the bias corrections move)
            losses.append(model.loss_and_grads(ids, targets, h0, c0, grads))
            adam.step(model.params.data, grads.data, cfg.lr)
        sides.append((losses, model.params.host().data))
    assert sides[1][0] == pytest.approx(sides[0][0], rel=1e-5)
    assert_close(sides[1][1], sides[0][1], atol=1e-5, what="weights after 2 steps")
    for before, after in zip(inputs, (params.data, ids, targets, h0, c0)):  # the inputs were left alone
        assert np.array_equal(before, after)


def _train(tmp_path, device, steps, resume=None, out="m.safetensors"):
    from rnncli.run.train import Trainer

    model = {} if resume else {"cell": "lstm", "hidden": 6, "embed": 3, "layers": 2}
    train = {"steps": steps, "eval_every": 2, "device": device, "out": str(tmp_path / out)}
    if not resume:
        train.update(batch=2, seq=4, val_frac=0.0, recipe="plain")  # (a constant lr: 1 + 3 steps = 4)
    with Trainer([CORPUS], model, train, resume=str(tmp_path / resume) if resume else None) as t:
        return [e["train_loss"] for e in t.run() if e["event"] == "step"]


def test_a_run_moves_between_devices(tmp_path):
    """A step on the GPU (each simulated step takes ~20 s), then 3 more resumed on the CPU: the losses
    of 4 steps on the CPU alone."""
    whole = _train(tmp_path, "cpu", 4, out="cpu.safetensors")
    first = _train(tmp_path, "cuda", 1, out="moved.safetensors")
    rest = _train(tmp_path, "cpu", 4, resume="moved.safetensors", out="moved.safetensors")
    assert first + rest == pytest.approx(whole, rel=1e-5)
    back = _train(
        tmp_path, "cuda", 5, resume="cpu.safetensors", out="cpu.safetensors"
    )  # and from the CPU to the GPU
    assert len(back) == 1 and np.isfinite(back[0])


def test_scoring_and_greedy_generation_match_the_cpu(tmp_path, monkeypatch):
    from rnncli.kernels.cuda import decode as cuda_decode
    from rnncli.run.evaluate import score_text
    from rnncli.run.sample import Decoder
    from rnncli.store.load import load_model

    _train(tmp_path, "cpu", 2)
    text = tmp_path / "t.txt"
    text.write_text(open(CORPUS).read()[:20])  # (a second a character in the simulator)
    path = str(tmp_path / "m.safetensors")
    scores = [score_text([str(text)], load_model(path, d)).nats_per_token for d in ("cpu", "cuda")]
    assert scores[1] == pytest.approx(scores[0], rel=1e-5)
    monkeypatch.setattr(cuda_decode, "MAX_THREADS", 32)  # (a block of 6 units: 32 threads cover it)
    runs = []
    for d in ("cpu", "cuda"):
        model, tok, _ = load_model(path, d)
        dec = Decoder(model, SampleConfig(length=12, greedy=True))
        dec.prime([np.array(tok.encode("Rain")[0])])
        runs.append(np.concatenate(list(dec.tokens(12, chunk=5))))
    assert (runs[0] == runs[1]).all()


def test_looking_inside_matches_the_cpu():
    """inspect --text's probe reads the GPU model's own state buffers: the same numbers as on the CPU."""
    from rnncli.run.probe import probe_ids

    params = random_case("lstm", V=7, E=3, H=4, L=2, seed=6)[0]
    ids = np.random.default_rng(6).integers(0, 7, 16)  # (two windows of 4 x 2: the state carried across)
    states = [(0, "h"), (1, "h"), (1, "c")]
    cpu, gpu = (probe_ids(Model(params.copy(), k), ids, 4, 2, 3, states) for k in (backend("cpu"), K))
    assert_close(gpu["loss"][1:], cpu["loss"][1:], atol=2e-5, what="loss")
    assert (gpu["top_ids"] == cpu["top_ids"]).all()
    for key in states:
        assert_close(gpu["acts"][key], cpu["acts"][key], atol=2e-5, what=str(key))


def test_a_gpu_run_repeats_bit_for_bit(monkeypatch):
    """Every sum has a fixed order: the same steps twice (reductions split among blocks, as large
    products have them) give the same bits in every loss, gradient and weight, and the same tokens.
    The simulator cannot race threads as a GPU does, so the one atomic in the kernels is pinned too:
    it adds integers (the sampler's histogram), whose sum has no order."""
    import re
    from pathlib import Path

    from rnncli.kernels.cuda import decode as cuda_decode
    from rnncli.kernels.cuda import ops as cuda_ops
    from rnncli.run.sample import Decoder

    monkeypatch.setattr(cuda_ops, "_MIN_SPLIT", 2)
    monkeypatch.setattr(cuda_decode, "MAX_THREADS", 32)  # (each simulated thread is a Python thread)
    params, ids, targets, h0, c0, _ = random_case("gru", V=7, E=3, H=4, L=1, T=2, B=2, seed=8)
    runs = []
    for _ in range(2):  # (each of the simulator's threads is a Python thread: one step, a few tokens)
        model = Model(params.copy(), K)
        grads, adam = model.params.zeros_like(), Adam(params.data.size, TrainConfig(lr=0.01, clip=0.5), K)
        loss = model.loss_and_grads(ids, targets, h0, c0, grads)
        norm = adam.step(model.params.data, grads.data, 0.01)
        dec = Decoder(model, SampleConfig(rng_seed=3))
        dec.prime([np.array([1])])
        tokens = np.concatenate(list(dec.tokens(3, chunk=3)))
        runs.append(((loss, norm), grads.host().data, model.params.host().data, tokens))
    assert runs[0][0] == runs[1][0]
    for first, second in zip(runs[0][1:], runs[1][1:]):
        assert first.tobytes() == second.tobytes()
    root = Path(__file__).resolve().parents[2] / "rnncli" / "kernels" / "cuda"
    atomics = [
        line.strip()
        for path in sorted(root.glob("*.py"))
        for line in path.read_text().splitlines()
        if re.search(r"\batomic\.", line)
    ]
    assert atomics == ["cuda.atomic.add(hist, now + ((u >> shift) & 15), vals[v] if weighed else 1)"]
