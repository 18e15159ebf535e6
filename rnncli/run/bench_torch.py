"""PyTorch's side of `rnncli bench --against-torch`, and the one PyTorch twin of rnncli's network
that the comparison tests and scripts share. Imported only when asked for: rnncli never needs torch."""

from __future__ import annotations

import os
from typing import List

import numpy as np

from rnncli.base.errors import RnncliError

try:
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    raise RnncliError("--against-torch needs PyTorch: pip install torch") from None

from rnncli.store.checkpoint import TRAINING_PREFIXES  # noqa: E402,F401  (re-exported for the tests)


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
    step, and token-at-a-time sampling (cells_loop)."""

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
        self.state, self.loop = None, None

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
            torch.nn.functional.cross_entropy(
                logits.reshape(-1, self.cfg.model.vocab_size), self.targets, reduction="sum"
            ).item()
        self.state = detach(self.state)

    def generate(self, n: int, rows: int = 1):
        """n tokens for each of `rows` samples, token at a time in TorchScript (cells_loop), handed
        to Python in chunks of sample.CHUNK tokens as rnncli's decoder hands them."""
        from rnncli.run.sample import CHUNK

        if self.loop is None:
            self.loop = cells_loop(self.net, self.cfg.model)
        H, L = self.cfg.model.hidden, self.cfg.model.layers
        with torch.inference_mode():
            x = torch.zeros(rows, dtype=torch.long, device=self.dev)
            h = [torch.zeros(rows, H, device=self.dev) for _ in range(L)]
            c = [torch.zeros(rows, H, device=self.dev) for _ in range(L)]
            while n > 0:
                out, h, c = self.loop(x, h, c, min(n, CHUNK))
                out.tolist()  # (streaming: each chunk's tokens reach Python)
                x, n = out[-1], n - CHUNK


class _Cells(torch.nn.Module):
    """TorchNet's layers as nn.RNNCell / GRUCell / LSTMCell sharing its weights, its embedding and
    head: a whole generation loop in TorchScript, with no Python between tokens. The fairest PyTorch
    generation we could write (an eager loop over nn.LSTM pays Python's dispatch every token)."""

    def __init__(self, net: TorchNet, cfg):
        super().__init__()
        make = {"rnn": torch.nn.RNNCell, "gru": torch.nn.GRUCell, "lstm": torch.nn.LSTMCell}[cfg.cell]
        self.cells = torch.nn.ModuleList()
        for k in range(cfg.layers):
            cell = make(cfg.embed if k == 0 else cfg.hidden, cfg.hidden)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                setattr(cell, name, getattr(net.rnn, f"{name}_l{k}"))
            self.cells.append(cell)
        self.embedding, self.head = net.embedding, net.head

    def _draw(self, h_top: torch.Tensor) -> torch.Tensor:
        return torch.multinomial(torch.softmax(self.head(h_top), -1), 1).view(-1)


class _HLoop(_Cells):
    def forward(self, x: torch.Tensor, h: List[torch.Tensor], c: List[torch.Tensor], n: int):
        out = torch.empty(n, x.shape[0], dtype=torch.long, device=x.device)
        for t in range(n):
            inp = self.embedding(x)
            for k, cell in enumerate(self.cells):
                h[k] = cell(inp, h[k])
                inp = h[k]
            x = self._draw(inp)
            out[t] = x
        return out, h, c


class _LstmLoop(_Cells):
    def forward(self, x: torch.Tensor, h: List[torch.Tensor], c: List[torch.Tensor], n: int):
        out = torch.empty(n, x.shape[0], dtype=torch.long, device=x.device)
        for t in range(n):
            inp = self.embedding(x)
            for k, cell in enumerate(self.cells):
                hc = cell(inp, (h[k], c[k]))
                h[k], c[k] = hc[0], hc[1]
                inp = h[k]
            x = self._draw(inp)
            out[t] = x
        return out, h, c


def cells_loop(net: TorchNet, cfg):
    """The scripted generation loop for net: (x (B,), h, c (lists of L (B, H)), n) -> (ids (n, B), h, c).
    TorchScript, though deprecated, because it ran fastest: small-lstm at batch 1 on one Zen 3 core,
    3,800 chars/s scripted, 2,700 for the same cells eager, 2,250 for a step under torch.compile."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script((_LstmLoop if cfg.cell == "lstm" else _HLoop)(net, cfg))
