"""The compiled decoder against the model's own forward pass, and the sampling rules."""
import numpy as np
import pytest

from rnncli import sample
from rnncli.config import SampleConfig
from rnncli.kernels.decode import sample_token
from rnncli.model import Model
from tests.helpers import CELLS, random_case


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("table", [True, False])
def test_greedy_decoding_follows_the_models_logits(cell, table, monkeypatch):
    monkeypatch.setattr(sample, "TABLE_LIMIT", 1 << 22 if table else 0)
    params = random_case(cell, V=17, E=6, H=9, L=3)[0]
    model = Model(params)
    prompt = np.array([3, 1, 4, 1, 5])
    out = np.concatenate(list(sample.Decoder(model, SampleConfig(greedy=True)).tokens(prompt, 70)))
    seq = np.concatenate([prompt, out[:-1]]).reshape(-1, 1)
    logits = model.logits(seq, *model.zero_state(1))[len(prompt) - 1 :, 0]
    np.testing.assert_array_equal(out, logits.argmax(-1))


def test_sampling_follows_the_distribution_and_its_cuts():
    logits = np.log(np.array([1.0, 2.0, 3.0], np.float32))  # probabilities 1/6, 2/6, 3/6
    probs = np.empty(3, np.float32)
    draw = lambda u, t=1.0, k=0, p=1.0: sample_token(logits, t, k, p, u, probs)  # noqa: E731
    assert [draw(u) for u in (0.1, 0.2, 0.4, 0.6, 0.99)] == [0, 1, 1, 2, 2]
    assert [draw(u, k=2) for u in (0.0, 0.35, 0.45, 0.99)] == [1, 1, 2, 2]  # 2/5, 3/5
    assert [draw(u, p=0.5) for u in (0.0, 0.99)] == [2, 2]  # the likeliest alone holds half
    assert [draw(u, k=1) for u in (0.0, 0.99)] == [2, 2]
    assert draw(0.0, t=0.0) == 2  # temperature 0 is greedy
    cold = [draw(u, t=0.05) for u in np.linspace(0, 0.99, 50)]
    assert cold.count(2) >= 49


def test_generation_is_repeatable_by_seed():
    model = Model(random_case("lstm", V=17, E=6, H=9, L=2)[0])
    run = lambda seed: np.concatenate(list(sample.Decoder(model, SampleConfig(rng_seed=seed)).tokens(np.array([1]), 200)))  # noqa: E731
    assert np.array_equal(run(5), run(5)) and not np.array_equal(run(5), run(6))
