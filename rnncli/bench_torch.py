"""PyTorch's side of `rnncli bench --against-torch`, and the one PyTorch twin of rnncli's network
that the comparison tests and scripts share. Imported only when asked for: rnncli never needs torch."""
from __future__ import annotations

import os

import numpy as np

from rnncli.errors import RnncliError

try:
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    raise RnncliError("--against-torch needs PyTorch: pip install torch") from None

from rnncli.checkpoint import TRAINING_PREFIXES  # noqa: E402,F401  (re-exported for the tests)


class TorchNet(torch.nn.Module):
    """nn.Embedding -> nn.RNN(tanh)/GRU/LSTM (not batch-first) -> nn.Linear, under the names
    rnncli's checkpoints use, for a ModelConfig."""

    def __init__(self, cfg):
        super().__init__()
        self.embedding = torch.nn.Embedding(cfg.vocab_size, cfg.embed)
        module = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cfg.cell]
        extra = {"nonlinearity": "tanh"} if cfg.cell == "rnn" else {}
        self.rnn = module(cfg.embed, cfg.hidden, num_layers=cfg.layers, **extra)
        self.head = torch.nn.Linear(cfg.hidden, cfg.vocab_size)

    def forward(self, ids, state=None):
        out, state = self.rnn(self.embedding(ids), state)
        return self.head(out), state


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


class Theirs:
    """The same work as bench.Ours, in PyTorch: train step (forward, backward, clip, Adam), scoring
    step, and token-at-a-time sampling at batch 1."""

    name = "torch"

    def __init__(self, cfg, threads: int | None, device: str = "cpu"):
        torch.set_num_threads(threads or os.cpu_count() or 1)
        torch.manual_seed(0)
        self.dev = "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
        self.cfg = cfg
        self.net = TorchNet(cfg.model).to(self.dev)  # on a GPU: cuDNN's recurrent layers
        self.opt = torch.optim.Adam(self.net.parameters(), lr=2e-3)
        rng = np.random.default_rng(0)
        V = cfg.model.vocab_size
        self.ids = torch.from_numpy(rng.integers(0, V, (cfg.seq, cfg.batch))).to(self.dev)
        self.targets = torch.from_numpy(rng.integers(0, V, (cfg.seq, cfg.batch))).reshape(-1).to(self.dev)
        self.state = None

    def _sync(self):
        if self.dev == "cuda":
            torch.cuda.synchronize()

    def train_step(self):
        logits, state = self.net(self.ids, None if self.state is None else detach(self.state))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, self.cfg.model.vocab_size), self.targets)
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
        self.opt.step()
        self.state = state
        self._sync()

    def eval_step(self):
        with torch.inference_mode():
            logits, self.state = self.net(self.ids, None if self.state is None else detach(self.state))
            torch.nn.functional.cross_entropy(logits.reshape(-1, self.cfg.model.vocab_size), self.targets,
                                              reduction="sum").item()
        self.state = detach(self.state)

    def generate(self, n: int, rows: int = 1):
        with torch.inference_mode():
            x, state = torch.zeros(1, rows, dtype=torch.long, device=self.dev), None
            for _ in range(n):
                logits, state = self.net(x, state)
                x = torch.multinomial(torch.softmax(logits[0], -1), 1).view(1, rows)
                x.tolist()  # streaming: each step's tokens reach Python before the next step
