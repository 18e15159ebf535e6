"""With torch installed: a checkpoint rnncli trained loads into PyTorch's modules and gives the same
logits. Skipped without torch (rnncli never needs it); the committed fixtures cover the math then."""

import numpy as np
import pytest

from rnncli.run.train import Trainer
from rnncli.store.load import load_model

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
from rnncli.run.bench_torch import TRAINING_PREFIXES, TorchNet  # noqa: E402


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_pytorch_reproduces_rnncli_logits(tmp_path, cell):
    text = "".join(np.random.default_rng(0).choice(list("abcdefgh \n"), 4000))
    (tmp_path / "c.txt").write_text(text)
    out = str(tmp_path / "m.safetensors")
    for _ in Trainer(
        [str(tmp_path / "c.txt")],
        {"cell": cell, "hidden": 19, "embed": 7, "layers": 2},
        {"batch": 4, "seq": 16, "steps": 20, "lr": 0.01, "out": out},
    ).run():
        pass
    model, tok, _ = load_model(out)
    ids, _ = tok.encode(text[:300])
    window = ids.astype(np.int64).reshape(-1, 1)  # (T, B=1)
    ours = model.logits(window, *model.zero_state(1))
    net = TorchNet(model.cfg)
    state = {k: v for k, v in safetensors_torch.load_file(out).items() if not k.startswith(TRAINING_PREFIXES)}
    net.load_state_dict(state, strict=True)
    with torch.no_grad():
        theirs = net(torch.from_numpy(window))[0].numpy()
    assert np.abs(ours - theirs).max() < 1e-4


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_the_benchmarks_scripted_generation_runs_the_same_network(cell):
    """bench_torch's TorchScript loop over nn.*Cell: fed back its own tokens, TorchNet (nn.LSTM and
    the others) reaches the same state, so the loop that generation is compared with is the model."""
    from rnncli.model.config import ModelConfig
    from rnncli.run.bench_torch import cells_loop

    cfg = ModelConfig(vocab_size=11, cell=cell, layers=2, hidden=9, embed=5)
    torch.manual_seed(0)
    net = TorchNet(cfg)
    zeros = [torch.zeros(3, 9) for _ in range(2)]
    with torch.no_grad():
        ids, h, c = cells_loop(net, cfg)(torch.zeros(3, dtype=torch.long), list(zeros), list(zeros), 12)
        fed = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids[:-1]])  # (T, B): the tokens each step read
        _, state = net(fed)
    h_n = state[0] if cell == "lstm" else state
    assert torch.allclose(torch.stack(h), h_n, atol=1e-6)
    if cell == "lstm":
        assert torch.allclose(torch.stack(c), state[1], atol=1e-6)
