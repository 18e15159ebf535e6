"""cuda_decode against the CPU decoder (kernels/cpu/decode.py) and the float64 sampler oracle
(reference.sample_probs), in the CUDA simulator, on tiny models."""

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("simulator tests: run with NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)
pytestmark = pytest.mark.cuda

import numpy as np  # noqa: E402
from numba import cuda  # noqa: E402

from rnncli.base.errors import RnncliError  # noqa: E402
from rnncli.kernels.cpu import decode as cpu  # noqa: E402
from rnncli.kernels.cuda import decode as gpu  # noqa: E402
from rnncli.kernels.reference import sample_probs  # noqa: E402
from rnncli.kernels.sampling import Sampling  # noqa: E402
from rnncli.model.config import ModelConfig  # noqa: E402
from rnncli.model.params import init_params  # noqa: E402

CELLS = ("rnn", "gru", "lstm")


def build(cell, H=5, V=11, E=3, L=2, table=True, R=0, B=2, seed=0):
    """(cfg, host Weights, host h, c, Rows) laid out as sample.Decoder lays them out; the state
    starts random so that loading it is tested too."""
    cfg = ModelConfig(vocab_size=V, cell=cell, layers=L, hidden=H, embed=E)
    rng = np.random.default_rng(seed)
    p = init_params(cfg, rng)
    G = cfg.gates * H
    layers = [p.layer(k) for k in range(L)]
    emb = np.ascontiguousarray(p["embedding.weight"])
    table0 = (
        (emb @ layers[0][0].T + layers[0][2]).astype(np.float32) if table else np.zeros((0, G), np.float32)
    )
    w = cpu.layout(layers, emb, table0, 3 * p["head.weight"], p["head.bias"])
    C = H if cell == "lstm" else 0
    A = 0 if cell == "rnn" else 4 * H
    f32 = lambda *shape: np.zeros(shape, np.float32)  # noqa: E731
    r = cpu.Rows(
        np.zeros(B, np.int64),
        f32(B, E),
        f32(B, G),
        f32(B, G),
        f32(B, A),
        f32(B, H),
        f32(B, C),
        f32(B, V),
        f32(B, V),
        np.zeros((B, R), np.int64),
        np.zeros((B, V if R else 0), np.int32),
        np.zeros(B, np.int64),
    )
    h = (0.5 * rng.standard_normal((L, B, H))).astype(np.float32)
    c = (0.5 * rng.standard_normal((L, B, C))).astype(np.float32)
    return cfg, w, h, c, r


def to_dev(t):
    return type(t)(*(cuda.to_device(a) for a in t))


def to_host(t):
    return type(t)(*(a.copy_to_host() for a in t))


def both(cell, block=32, **kw):
    """The CPU's and the GPU's copies of one model and state, and a GPU plan."""
    cfg, w, h, c, r = build(cell, **kw)
    plan = gpu.prepare_decoding(cfg, h.shape[1], None, block=block)
    dev = (to_dev(w), cuda.to_device(h), cuda.to_device(c), to_dev(r))
    return cfg, plan, (w, h, c, r), dev


def fed(cell, prompt, block=32, **kw):
    cfg, plan, (w, h, c, r), (dw, dh, dc, dr) = both(cell, block, **kw)
    cpu.feed(cfg.cell_code, w, cpu.blas_paths(cfg.layers), h, c, r, prompt)
    gpu.feed(plan, cfg.cell_code, dw, dh, dc, dr, prompt)
    return cfg, plan, (w, h, c, r), (dw, dh, dc, dr)


def assert_same_state(h, c, r, dh, dc, dr):
    hr = to_host(dr)
    np.testing.assert_allclose(dh.copy_to_host(), h, atol=2e-5)
    np.testing.assert_allclose(dc.copy_to_host(), c, atol=2e-5)
    np.testing.assert_allclose(hr.logits, r.logits, atol=2e-5)
    for name in ("toks", "recent", "counts", "seen"):
        np.testing.assert_array_equal(getattr(hr, name), getattr(r, name), err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("table", [True, False])
def test_feed_matches_cpu(cell, table):
    _, _, (w, h, c, r), (dw, dh, dc, dr) = fed(cell, np.array([3, 0, 10, 3], np.int64), table=table, R=3)
    assert_same_state(h, c, r, dh, dc, dr)


def test_wide_model_with_64_threads():
    """G = 280 columns over 64 threads: unsliced products, two rounds of 4 items a thread."""
    cfg, plan, (w, h, c, r), (dw, dh, dc, dr) = fed(
        "lstm", np.array([1, 2, 7], np.int64), block=64, H=70, R=2
    )
    assert_same_state(h, c, r, dh, dc, dr)
    s, u = Sampling(1.2, 5, 0.95, 0.02, 0.9), np.random.default_rng(3).random((3, 2))
    want, got = np.empty((3, 2), np.int64), np.empty((3, 2), np.int64)
    cpu.decode_rows(cfg.cell_code, w, cpu.blas_paths(cfg.layers), h, c, r, s, u, want, 0, 2)
    gpu.decode(plan, cfg.cell_code, dw, dh, dc, dr, s, u, got)
    np.testing.assert_array_equal(got, want)
    assert_same_state(h, c, r, dh, dc, dr)


@pytest.mark.parametrize("cell", CELLS)
def test_greedy_matches_cpu(cell):
    cfg, plan, (w, h, c, r), (dw, dh, dc, dr) = fed(cell, np.array([4, 1], np.int64), R=4)
    s = Sampling(1.0, 0, 1.0, 0.0, 0.0)
    n, B = 6, h.shape[1]
    u = np.random.default_rng(1).random((n, B))
    want, got = np.empty((n, B), np.int64), np.empty((n, B), np.int64)
    cpu.decode_rows(cfg.cell_code, w, cpu.blas_paths(cfg.layers), h, c, r, s, u, want, 0, B)
    gpu.decode(plan, cfg.cell_code, dw, dh, dc, dr, s, u, got)
    np.testing.assert_array_equal(got, want)
    assert_same_state(h, c, r, dh, dc, dr)


@pytest.mark.parametrize(
    "s",
    [
        Sampling(1.0, 0, 1.0, 0.0, 1.0),
        Sampling(1.5, 4, 0.9, 0.05, 0.8),
        Sampling(1.0, 0, 0.7, 0.0, 1.3),
        Sampling(0.7, 3, 1.0, 0.2, 1.0),
    ],
)
def test_sampling_matches_cpu(s):
    cfg, plan, (w, h, c, r), (dw, dh, dc, dr) = fed("gru", np.array([5, 6], np.int64), R=3, B=3)
    n, B = 12, h.shape[1]
    u = np.random.default_rng(2).random((n, B))
    want, got = np.empty((n, B), np.int64), np.empty((n, B), np.int64)
    cpu.decode_rows(cfg.cell_code, w, cpu.blas_paths(cfg.layers), h, c, r, s, u, want, 0, B)
    gpu.decode(plan, cfg.cell_code, dw, dh, dc, dr, s, u, got)
    np.testing.assert_array_equal(got, want)
    assert_same_state(h, c, r, dh, dc, dr)


TIES = np.array([1.0, 3.0, 3.0, 0.5, -2.0, 3.0, 0.0, 0.0, 1.0, 2.0, -1.0], np.float32)


@pytest.mark.parametrize(
    "s",
    [
        Sampling(1.0, 2, 1.0, 0.0, 1.0),  # three 3.0s for two places: the lowest ids stay (stable order)
        Sampling(1.0, 0, 0.5, 0.0, 1.0),  # the boundary inside the tie at 3.0
        Sampling(1.0, 0, 0.95, 0.0, 0.7),
        Sampling(1.0, 5, 1.0, 0.1, 1.0),
        Sampling(1.25, 6, 0.9, 0.02, 1.0),
        Sampling(2.0, 0, 1.0, 0.0, 1.0),
    ],
)
def test_chain_keeps_what_the_oracle_keeps(s):
    """One token from set logits (ties at the cuts, a penalty ring holding 1, 4, 1): the weights
    the draw leaves in Rows.probs are reference.sample_probs's distribution."""
    cfg, plan, (w, h, c, r), (dw, dh, dc, dr) = both("rnn", R=3, B=2)
    logits = np.stack([TIES, np.roll(TIES, 3) * 0.5])
    recent = np.array([[1, 4, 1], [2, 2, 7]], np.int64)
    counts = np.zeros((2, 11), np.int32)
    for b in range(2):
        for t in recent[b]:
            counts[b, t] += 1
    dr.logits.copy_to_device(logits)
    dr.recent.copy_to_device(recent)
    dr.counts.copy_to_device(counts)
    dr.seen.copy_to_device(np.array([3, 3], np.int64))
    u = np.array([[0.3, 0.8]])
    got = np.empty((1, 2), np.int64)
    gpu.decode(plan, cfg.cell_code, dw, dh, dc, dr, s, u, got)
    probs = dr.probs.copy_to_host()
    for b in range(2):
        want = sample_probs(logits[b], recent[b], s.penalty, s.top_k, s.top_p, s.min_p, s.temperature)
        np.testing.assert_array_equal(probs[b] > 0, want > 0)
        np.testing.assert_allclose(probs[b] / probs[b].sum(), want, atol=1e-6)
        assert got[0, b] == np.searchsorted(np.cumsum(want), u[0, b], side="right")


def test_chain_random_rows_and_settings():
    """Random logits on a half-step grid (many ties) over V = 40, random rings and settings, 64
    threads: the kept set and the weights are the oracle's."""
    rng = np.random.default_rng(5)
    V, B, R = 40, 2, 6
    cfg, plan, _, (dw, dh, dc, dr) = both("rnn", block=64, V=V, R=R, B=B)
    for trial in range(10):
        logits = (np.round(rng.normal(0, 2, (B, V)) * 2) / 2).astype(np.float32)
        recent = rng.integers(0, V, (B, R))
        counts = np.zeros((B, V), np.int32)
        for b in range(B):
            np.add.at(counts[b], recent[b], 1)
        s = Sampling(
            float(rng.choice([1.0, 1.3, 0.8])),
            int(rng.choice([0, 1, 3, 10, 39])),
            float(rng.choice([1.0, 0.3, 0.8, 0.99])),
            float(rng.choice([0.0, 0.01, 0.3])),
            float(rng.choice([1.0, 0.5, 2.0])),
        )
        for name, a in (("logits", logits), ("recent", recent), ("counts", counts)):
            getattr(dr, name).copy_to_device(a)
        dr.seen.copy_to_device(np.full(B, R, np.int64))
        u = rng.random((1, B))
        got = np.empty((1, B), np.int64)
        gpu.decode(plan, cfg.cell_code, dw, dh, dc, dr, s, u, got)
        probs = dr.probs.copy_to_host()
        for b in range(B):
            want = sample_probs(logits[b], recent[b], s.penalty, s.top_k, s.top_p, s.min_p, s.temperature)
            # (expneg32 weighs 0 what is under exp(-15.8) of the top, as the CPU's draw does)
            assert not np.any((probs[b] > 0) & (want == 0)), f"{trial} {b} {s}: kept what the oracle cuts"
            assert np.all(probs[b][want > 1e-6 * want.max()] > 0), (
                f"{trial} {b} {s}: cut what the oracle keeps"
            )
            np.testing.assert_allclose(probs[b] / probs[b].sum(), want, atol=1e-6)
            assert got[0, b] == np.searchsorted(np.cumsum(want), u[0, b], side="right")


def test_greedy_first_of_equal_maxima_and_prompt_less_feed():
    cfg, plan, (w, h, c, r), (dw, dh, dc, dr) = both("lstm", B=1)
    gpu.feed(plan, cfg.cell_code, dw, dh, dc, dr, np.zeros(0, np.int64))  # nothing to feed: no change
    np.testing.assert_array_equal(dh.copy_to_host(), h)
    dr.logits.copy_to_device(np.array([TIES]))
    got = np.empty((1, 1), np.int64)
    gpu.decode(plan, cfg.cell_code, dw, dh, dc, dr, Sampling(1.0, 0, 1.0, 0.0, 0.0), np.zeros((1, 1)), got)
    assert got[0, 0] == 1


def test_plan_threads_and_limits():
    small, wide = ModelConfig(vocab_size=11, hidden=5), ModelConfig(vocab_size=11, hidden=128)
    assert gpu.prepare_decoding(small, 1, None).threads == 256
    assert gpu.prepare_decoding(wide, 1, 4).threads == gpu.MAX_THREADS
    with pytest.raises(ValueError, match="multiple of 32"):
        gpu.prepare_decoding(wide, 1, None, block=100)
    cfg, plan, _, (dw, dh, dc, dr) = both("lstm", B=1)
    big = cuda.device_array((3, 1, 2000), np.float32)  # h and c of 3 x 2000: over 48 KB of shared memory
    with pytest.raises(RnncliError, match="shared memory"):
        gpu.feed(plan, cfg.cell_code, dw, big, big, dr, np.array([1], np.int64))


def test_ptx_list_names_the_kernels():
    assert [name for name, _, _ in gpu.PTX] == ["decode"]
    assert all(callable(f) for _, f, _ in gpu.PTX)


@pytest.mark.parametrize("L", [1, 2])
def test_the_gpu_lays_out_its_own_weights(L):
    """backend.decoder_weights on the device, from the parameters as the model holds them there, gives
    the transposes the CPU's layout gives on the host (sample.Decoder no longer goes through the host)."""
    from rnncli.kernels.cuda import backend as K

    cfg = ModelConfig(vocab_size=11, cell="lstm", layers=L, hidden=5, embed=3)
    p = init_params(cfg, np.random.default_rng(1))
    d = p.to(K)
    table0 = np.random.default_rng(2).standard_normal((11, cfg.gate_width)).astype(np.float32)
    layers = [p.layer(k) for k in range(L)]
    want = cpu.layout(layers, p["embedding.weight"], table0, p["head.weight"], p["head.bias"])
    got = to_host(
        K.decoder_weights(
            [d.layer(k) for k in range(L)],
            d["embedding.weight"],
            cuda.to_device(table0),
            d["head.weight"],
            d["head.bias"],
        )
    )
    for name in ("table0", "emb", "W_ih0T", "W_ihT", "W_hhT", "b_ih", "b_hh", "W_outT", "b_out"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
