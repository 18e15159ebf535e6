"""The compiled decoder against the model's own forward pass; batched rows against single ones;
each sampler against the float64 reference; stop strings across chunk edges; the answers' records."""

import numpy as np
import pytest
from scipy.stats import chisquare

from rnncli.data.text import Tokenizer
from rnncli.kernels import reference
from rnncli.kernels.sampling import Sampling, choose, cut_min_p, cut_top_k, cut_top_p, draw, penalize
from rnncli.model.config import SampleConfig
from rnncli.model.model import Model
from rnncli.run import sample
from tests.helpers import CELLS, random_case


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("table", [True, False])
def test_greedy_decoding_follows_the_models_logits(cell, table, monkeypatch):
    monkeypatch.setattr(sample, "TABLE_LIMIT", 1 << 22 if table else 0)
    params = random_case(cell, V=17, E=6, H=9, L=3)[0]
    model = Model(params)
    prompt = np.array([3, 1, 4, 1, 5])
    dec = sample.Decoder(model, SampleConfig(greedy=True))
    dec.prime([prompt])
    out = np.concatenate([o[:, 0] for o in dec.tokens(70, chunk=16)])
    seq = np.concatenate([prompt, out[:-1]]).reshape(-1, 1)
    logits = model.logits(seq, *model.zero_state(1))[len(prompt) - 1 :, 0]
    np.testing.assert_array_equal(out, logits.argmax(-1))


@pytest.mark.parametrize("cell", CELLS)
def test_rows_decoded_together_equal_rows_decoded_alone(cell):
    """Row i of a batch (its own prompt, its own random stream) makes the same tokens, from logits
    within 1e-5, as the same stream decoded alone."""
    model = Model(random_case(cell, V=23, E=6, H=16, L=2)[0])
    cfg = SampleConfig(rng_seed=11, top_k=10, min_p=0.05, repeat_penalty=1.3, repeat_last_n=8)
    prompts = [np.array([1, 2, 3]), np.array([4]), np.array([5, 6, 7, 8, 9]), np.array([1, 2, 3])]
    together = sample.Decoder(model, cfg, streams=range(4))
    together.prime(prompts)
    batch = np.concatenate(list(together.tokens(40, chunk=7)))
    for i, p in enumerate(prompts):
        alone = sample.Decoder(model, cfg, streams=[i])
        alone.prime([p])
        np.testing.assert_array_equal(np.concatenate(list(alone.tokens(40)))[:, 0], batch[:, i])
        np.testing.assert_allclose(alone.rows.logits[0], together.rows.logits[i], atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("path", [1, 2, 3])
def test_every_product_path_decodes_as_blas_does(cell, path, monkeypatch):
    """Rows shared among two threads, every product by one of our kernels (gemm.PATHS), against every
    product by BLAS: the same tokens, from logits within 1e-5. No token table, so that layer 0's
    input product runs too."""
    from rnncli.kernels.cpu import decode

    monkeypatch.setattr(sample, "TABLE_LIMIT", 0)
    model = Model(random_case(cell, V=23, E=6, H=20, L=2)[0])
    cfg = SampleConfig(rng_seed=5, top_k=12, repeat_penalty=1.2, repeat_last_n=6)
    runs = []
    for paths in (decode.blas_paths(2), np.full(5, path, np.int64)):
        dec = sample.Decoder(model, cfg, streams=range(3))
        dec.plan = (2, paths)  # (one thread gets a single row)
        dec.prime([np.array([1, 2]), np.array([3]), np.array([4])])
        runs.append((np.concatenate(list(dec.tokens(30, chunk=9))), dec.rows.logits.copy()))
    np.testing.assert_array_equal(runs[1][0], runs[0][0])
    np.testing.assert_allclose(runs[1][1], runs[0][1], atol=1e-5)


def _counts(recent, V):
    return np.stack([np.bincount(row, minlength=V) for row in recent]).astype(np.int32)


def _chain(logits, recent, s):
    """The compiled chain's distribution: the cuts, then draw's weights, normalised."""
    z = logits.astype(np.float32).copy()
    B, V = z.shape
    if s.penalty != 1.0:
        penalize(z, _counts(recent, V), s.penalty)
    cut_top_k(z, s.top_k)
    cut_top_p(z, s.top_p)
    cut_min_p(z, s.min_p)
    probs, out = np.zeros((B, V), np.float32), np.zeros(B, np.int64)
    draw(z, s.temperature, np.zeros(B), out, probs)
    if s.temperature <= 0:
        return np.eye(V)[out]
    return probs / probs.sum(axis=1, keepdims=True)


SETTINGS = [
    Sampling(1.0, 0, 1.0, 0.0, 1.0),
    Sampling(1.5, 0, 1.0, 0.0, 1.0),
    Sampling(1.0, 5, 1.0, 0.0, 0.7),
    Sampling(1.0, 0, 0.8, 0.0, 1.0),
    Sampling(1.0, 0, 1.0, 0.1, 1.3),
    Sampling(1.3, 8, 0.9, 0.05, 0.8),
    Sampling(0.7, 0, 1.0, 0.0, 1.0),
    Sampling(2.0, 3, 1.0, 0.0, 0.0),
]


@pytest.mark.parametrize("s", SETTINGS, ids=str)
def test_each_sampler_keeps_what_the_reference_keeps_with_its_probabilities(s):
    rng = np.random.default_rng(3)
    logits = (2.0 * rng.standard_normal((6, 30))).astype(np.float32)
    recent = rng.integers(0, 30, (6, 10))
    got = _chain(logits, recent, s)
    for b in range(6):
        want = reference.sample_probs(logits[b], recent[b], *s)
        np.testing.assert_array_equal(got[b] > 0, want > 0)
        np.testing.assert_allclose(got[b], want, atol=1e-6)


@pytest.mark.parametrize("s", SETTINGS[1:6], ids=str)
def test_draws_follow_the_reference_distribution(s):
    """Chi-square over 20,000 draws of the whole chain, fixed seed."""
    rng = np.random.default_rng(5)
    logits = np.repeat(rng.standard_normal((1, 12)).astype(np.float32), 20000, axis=0)
    recent = np.repeat(rng.integers(0, 12, (1, 4)), 20000, axis=0)
    out = np.zeros(20000, np.int64)
    choose(logits.copy(), _counts(recent, 12), s, rng.random(20000), out, np.zeros_like(logits))
    want = reference.sample_probs(logits[0], recent[0], *s)
    kept = want > 0
    counts = np.bincount(out, minlength=12)
    assert counts[~kept].sum() == 0
    assert chisquare(counts[kept], 20000 * want[kept]).pvalue > 1e-3


def test_generation_is_repeatable_by_seed_and_sample_i_does_not_depend_on_n():
    model = Model(random_case("lstm", V=17, E=6, H=9, L=2)[0])

    def run(seed, n_samples):
        dec = sample.Decoder(model, SampleConfig(rng_seed=seed), streams=range(n_samples))
        dec.prime([np.array([1])])
        return np.concatenate(list(dec.tokens(200)))

    assert np.array_equal(run(5, 1), run(5, 1)) and not np.array_equal(run(5, 1), run(6, 1))
    wide = run(5, 5)
    np.testing.assert_array_equal(wide[:, :2], run(5, 2))
    assert not np.array_equal(wide[:, 0], wide[:, 1])


def _loaded(kind="char", V=None):
    text = "the cat sat on the mat; é è ê\n" * 3
    tok = Tokenizer.build(kind, text.encode())
    model = Model(random_case("gru", V=len(tok), E=5, H=12, L=1)[0])
    return model, tok, {}


def _answers(loaded, prompts, chunk=sample.CHUNK, **settings):
    cfg = SampleConfig(**{"rng_seed": 2, "length": 300, **settings})
    return [e[1] for e in sample.generate(loaded, prompts, cfg, chunk=chunk) if e[0] == "answer"]


@pytest.mark.parametrize("kind", ["char", "byte", "word"])
@pytest.mark.parametrize("chunk", [1, 2, 64])
def test_a_stop_string_ends_the_text_right_before_it_across_chunk_edges(kind, chunk):
    loaded = _loaded(kind)
    full = _answers(loaded, ["the"], num_samples=3)
    for a in full:
        assert a.stop_reason == "length" and a.tokens == 300
    target = full[1].text
    stop = next(
        target[i : i + 2]
        for i in range(40, len(target))
        if target[i : i + 2].strip() and target.find(target[i : i + 2]) >= 20
    )
    got = _answers(loaded, ["the"], chunk=chunk, num_samples=3, stop=(stop, "\x00never"))
    for before, after in zip(full, got):
        cut = before.text.find(stop)
        assert after.text == (before.text if cut < 0 else before.text[:cut])
        assert after.stop_reason == ("length" if cut < 0 else "stop")
    if kind != "byte":  # one token a character or word: the stop's last token is counted, no more
        assert got[1].tokens <= 300 and len(got[1].text) < len(full[1].text)


def test_a_multibyte_stop_string_with_the_byte_tokenizer():
    loaded = _loaded("byte")
    full = _answers(loaded, ["é"], length=2000)[0].text
    accented = next((ch for ch in full if ord(ch) > 127 and ch != "\ufffd"), None)
    if accented is None:
        pytest.skip("the random model made no multi-byte character")
    got = _answers(loaded, ["é"], length=2000, chunk=1, stop=(accented,))[0]
    assert got.text == full[: full.find(accented)] and got.stop_reason == "stop"


def test_answers_carry_their_prompt_index_reason_and_speed():
    loaded = _loaded()
    answers = _answers(loaded, ["the", "cat", ""], length=20, num_samples=2)
    assert [a.index for a in answers] == [1, 2, 3, 4, 5, 6]
    assert [a.prompt for a in answers] == ["the", "the", "cat", "cat", "", ""]
    record = answers[0].to_json()
    assert {"index", "prompt", "text", "tokens", "chars", "stop_reason", "stats"} <= record.keys()
    assert record["tokens"] == 20 and record["stats"]["tokens_per_s"] > 0
    timed = _answers(loaded, ["the"], length=10**7, max_time=0.05)[0]
    assert timed.stop_reason == "time" and 0 < timed.tokens < 10**7


def test_stop_scanner_holds_back_only_what_may_begin_a_stop_string():
    s = sample.StopScanner(["abc", "xy"])
    assert s.feed("hello a") == ("hello ", False)
    assert s.feed("b") == ("", False)
    assert s.feed("d x") == ("abd ", False)
    assert s.feed("y and more") == ("", True)


def test_no_ring_means_no_penalty_and_a_huge_top_k_keeps_all():
    """--repeat-last-n 0 turns the penalty off (and no kernel reads counts it does not have)."""
    model = Model(random_case("gru", V=19, E=5, H=12, L=1)[0])

    def greedy(**settings):
        dec = sample.Decoder(model, SampleConfig(greedy=True, **settings))
        dec.prime([np.array([1, 2])])
        return np.concatenate(list(dec.tokens(60)))[:, 0]

    np.testing.assert_array_equal(greedy(repeat_penalty=1.8, repeat_last_n=0), greedy())
    np.testing.assert_array_equal(greedy(top_k=10**20), greedy())
    assert not np.array_equal(greedy(repeat_penalty=1.8, repeat_last_n=8), greedy())


def test_time_is_the_reason_only_when_the_length_was_not_reached():
    loaded = _loaded()
    assert _answers(loaded, ["the"], length=1, max_time=1e-9)[0].stop_reason == "length"
    cut = _answers(loaded, ["the"], length=500, max_time=1e-9)[0]
    assert cut.stop_reason == "time" and cut.tokens == 1  # the first token comes alone, then the clock


def test_later_batches_reuse_the_weights_and_match_one_big_batch(monkeypatch):
    loaded = _loaded()
    split = _answers(loaded, ["the", "cat"], length=12, num_samples=35)  # 70 answers: batches of 64 and 6
    monkeypatch.setattr(sample, "BATCH", 128)
    whole = _answers(loaded, ["the", "cat"], length=12, num_samples=35)
    assert [a.index for a in split] == list(range(1, 71))
    assert [a.text for a in split] == [a.text for a in whole]
