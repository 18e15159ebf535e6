"""Narrow weights (`--weights bf16|int8`): the formats against independent arithmetic, the products that
widen them in registers against the float64 product of the widened weights, generation against the
float32 model whose weights went through the format, and the flag on the command line and in bench."""

import json
from pathlib import Path

import numpy as np
import pytest

from rnncli.kernels import formats
from rnncli.kernels.cpu import gemm, narrow
from rnncli.model.config import SampleConfig
from rnncli.model.model import Model
from rnncli.model.params import Params
from rnncli.run import sample
from tests.helpers import random_case
from tests.hostile import assert_clean, run_cli

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden"
CHECKPOINT = str(GOLDEN / "char_gru.safetensors")
TEXT = str(GOLDEN / "notes.txt")


def _nearest_bf16(x: np.ndarray) -> np.ndarray:
    """The bf16 nearest to each float32, by float64 distances to the two candidates that share its
    upper bits or the next ones (ties: the even one)."""
    lo = x.view(np.uint32) >> 16
    hi = lo + 1
    value = lambda top: (top.astype(np.uint32) << 16).view(np.float32).astype(np.float64)  # noqa: E731
    d_lo, d_hi = np.abs(x - value(lo)), np.abs(value(hi) - x)
    return np.where((d_hi < d_lo) | ((d_hi == d_lo) & (lo % 2 == 1)), hi, lo).astype(np.uint16)


def test_bf16_is_the_upper_half_rounded_to_nearest_even():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(20000) * np.exp(rng.uniform(-20, 20, 20000))).astype(np.float32)
    ties = (np.arange(0x3E00, 0x3E00 + 2000, dtype=np.uint32) << 16 | 0x8000).view(np.float32)  # halfway
    x = np.concatenate([x, ties, -ties, np.float32([0.0, -0.0, 1.0])])
    q = formats.to_bf16(x)
    np.testing.assert_array_equal(q, _nearest_bf16(x))
    assert formats.to_bf16(np.float32([1 + 2**-8, 1 + 3 * 2**-8])).tolist() == [0x3F80, 0x3F82]  # to even
    widened = formats.from_bf16(q)
    np.testing.assert_array_equal(widened.view(np.uint32), q.astype(np.uint32) << 16)
    np.testing.assert_array_equal(formats.round_trip(widened, "bf16"), widened)  # already bf16: kept


def test_int8_is_within_half_a_step_of_each_rows_scale():
    rng = np.random.default_rng(1)
    W = (rng.standard_normal((40, 33)) * np.exp(rng.uniform(-8, 3, (40, 1)))).astype(np.float32)
    W[7] = 0.0
    q, scale = formats.to_int8(W)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (40,)
    assert np.abs(q).max() == 127 and (np.abs(q).max(axis=1)[np.arange(40) != 7] == 127).all()
    assert (q[7] == 0).all()
    back = formats.widen(q, scale)
    assert (np.abs(back - W) <= scale[:, None] / 2 * (1 + 1e-5)).all()
    q2, scale2 = formats.to_int8(back)  # a round-tripped matrix goes narrow again unchanged
    np.testing.assert_array_equal(q2, q)
    np.testing.assert_allclose(scale2, scale, rtol=1e-6)


@pytest.mark.parametrize("fmt", ["f32", "bf16", "int8"])
@pytest.mark.parametrize(
    "M,path",
    [(1, narrow.ONE), (1, narrow.SPREAD), (3, gemm.ROWS), (5, gemm.ROWS4), (3, gemm.BLAS), (4, gemm.COLS)],
    ids=str,
)
def test_narrow_products_equal_the_float64_product_of_the_widened_weights(fmt, M, path):
    """Within a float32 sum's rounding of sum_k |a_k w_jk|, every output; N and K not multiples of a
    tile. BLAS and COLS read the transpose the decoder lays out: the narrow values widened, unscaled."""
    rng = np.random.default_rng(2)
    W = rng.standard_normal((37, 45)).astype(np.float32)
    A = rng.standard_normal((M, 45)).astype(np.float32)
    Q, scale = formats.compress(W, fmt)
    wide = formats.widen(Q, scale).astype(np.float64)
    C = np.full((M, len(W)), np.nan, np.float32)
    empty = np.zeros(0, np.float32) if scale is None else scale
    WT = np.ascontiguousarray(formats.widen(Q).T)  # (decode.layout's)
    narrow.product_any(A, gemm.padded(Q), WT, empty, C, path)
    reference = A.astype(np.float64) @ wide.T
    assert (np.abs(C - reference) <= 1e-5 * (np.abs(A) @ np.abs(wide).T)).all()


def _round_tripped(params: Params, fmt: str) -> Params:
    tensors = formats.round_trip_tensors(dict(params.views), params.cfg.layers, fmt)
    return Params(params.cfg).load(tensors)


def _greedy(model: Model, rows: int, n: int = 60):
    dec = sample.Decoder(model, SampleConfig(greedy=True), streams=range(rows))
    dec.prime([np.array([1, 2, 3]), np.array([4]), np.array([5, 6])][:rows])
    return np.concatenate(list(dec.tokens(n, chunk=16))), dec.rows.logits.copy()


@pytest.mark.parametrize("fmt", ["bf16", "int8"])
@pytest.mark.parametrize("spread", [False, True])
def test_narrow_generation_is_the_round_tripped_models(fmt, spread, monkeypatch):
    """Greedy tokens from the narrow decoder, one row (by this thread, or outputs shared among the
    threads) and three rows (the threads sharing the rows), equal those of the float32 decoder on
    the round-tripped weights, from logits within 1e-5."""
    from rnncli.kernels.cpu import backend

    monkeypatch.setattr(backend, "SPREAD_FROM", 0 if spread else 1 << 40)
    monkeypatch.setattr(sample, "TABLE_LIMIT", 0 if spread else 1 << 22)  # (layer 0 by its product too)
    params = _round_tripped(random_case("lstm", V=23, E=6, H=20, L=3)[0], fmt)
    for rows in (1, 3):
        tokens, logits = _greedy(Model(params, weights=fmt), rows)
        want, want_logits = _greedy(Model(params), rows)
        np.testing.assert_array_equal(tokens, want)
        np.testing.assert_allclose(logits, want_logits, atol=1e-5)


def test_a_model_loaded_narrow_holds_the_round_tripped_weights():
    """What eval and inspect score: the large matrices through the format, the rest as trained."""
    from rnncli.store.load import load_model

    trained = load_model(CHECKPOINT, "cpu")[0].params
    loaded = load_model(CHECKPOINT, "cpu", "int8")[0]
    assert loaded.weights == "int8"
    narrow_names = formats.narrow_names(trained.cfg.layers)
    for name, view in trained.views.items():
        want = formats.round_trip(view, "int8") if name in narrow_names else view
        np.testing.assert_array_equal(loaded.params[name], want)


def test_generate_with_bf16_writes_the_round_tripped_models_text():
    from rnncli.store.load import load_model

    model, tok, _ = load_model(CHECKPOINT, "cpu", "bf16")
    code, out, err = run_cli(
        "generate", CHECKPOINT, "--weights", "bf16", "--greedy", "-s", "The", "-n", "50", "--no-echo"
    )
    assert code == 0, err
    tokens = np.concatenate([t[:, 0] for t in _decode(Model(model.params), tok, "The", 50)])
    assert out == tok.decoder()(tokens)


def _decode(model, tok, seed, n):
    dec = sample.Decoder(model, SampleConfig(greedy=True))
    dec.prime([np.asarray(tok.encode(seed)[0], np.int64)])
    return list(dec.tokens(n))


def test_eval_scores_the_narrow_model_and_a_bad_format_is_one_line():
    scores = {}
    for fmt in ("f32", "bf16", "int8"):
        code, out, err = run_cli("eval", CHECKPOINT, TEXT, "--weights", fmt, "--json")
        assert code == 0, err
        scores[fmt] = json.loads(out)["nats_per_token"]
    assert scores["bf16"] != scores["f32"] and abs(scores["int8"] - scores["f32"]) < 0.05
    for argv in (("generate", CHECKPOINT), ("eval", CHECKPOINT, TEXT), ("bench", "-c", "small-rnn")):
        code, out, err = run_cli(*argv, "--weights", "fp16")
        assert_clean(code, err)
        assert "--weights takes f32, bf16, int8, not 'fp16'" in err and out == ""


def test_the_gpu_decoder_refuses_narrow_weights_in_one_line(monkeypatch):
    from types import SimpleNamespace

    from rnncli.store import load

    monkeypatch.setattr(load, "backend", lambda device: SimpleNamespace(NAME="cuda"))
    code, out, err = run_cli("generate", CHECKPOINT, "--weights", "int8")
    assert_clean(code, err)
    assert "--weights int8: the GPU decoder reads float32 weights only" in err


def test_bench_counts_the_bytes_each_format_reads():
    """medium-lstm by hand: 2 x 512 units, 65 tokens, embedding 64; the narrow matrices are both
    W_hh and layer 1's W_ih (2048 x 512 each) and the head (65 x 512)."""
    from rnncli.run.bench import CONFIGS

    cfg = CONFIGS["medium-lstm"]
    G, H, V, E = 2048, 512, 65, 64
    # float32: every weight but the embedding's, layer 0's W_ih as one row of its (V, G) table
    f32 = 4 * (G + 3 * G * H + 4 * G + V * H + V)
    narrow, rows = 3 * G * H + V * H, 3 * G + V
    assert cfg.weight_bytes() == cfg.weight_bytes(True, "f32") == f32
    assert cfg.weight_bytes(True, "bf16") == f32 - 2 * narrow
    assert cfg.weight_bytes(True, "int8") == f32 - 3 * narrow + 4 * rows
    assert cfg.weight_bytes(False, "int8") == 4 * (cfg.model.n_params - V * E)  # (PyTorch's: as written)
