"""Parameters under PyTorch's names and layouts, held as views into one flat float32 buffer.

Names are those of a module with children `embedding` (nn.Embedding), `rnn` (nn.RNN/GRU/LSTM with
batch_first=False) and `head` (nn.Linear), so the tensors load into those modules with load_state_dict.
"""
from __future__ import annotations

import numpy as np

from rnncli.config import ModelConfig


class Params:
    """A flat float32 buffer and a dict of named views into it (same memory)."""

    def __init__(self, cfg: ModelConfig, data: np.ndarray | None = None):
        self.cfg = cfg
        total = cfg.n_params
        self.data = np.zeros(total, np.float32) if data is None else data
        assert self.data.shape == (total,) and self.data.dtype == np.float32
        self.views: dict[str, np.ndarray] = {}
        offset = 0
        for name, shape in cfg.tensor_shapes():
            size = int(np.prod(shape))
            self.views[name] = self.data[offset : offset + size].reshape(shape)
            offset += size

    def __getitem__(self, name: str) -> np.ndarray:
        return self.views[name]

    def names(self) -> list[str]:
        return list(self.views)

    def layer(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        v = self.views
        return v[f"rnn.weight_ih_l{k}"], v[f"rnn.weight_hh_l{k}"], v[f"rnn.bias_ih_l{k}"], v[f"rnn.bias_hh_l{k}"]

    def zeros_like(self) -> "Params":
        return Params(self.cfg)

    def copy(self) -> "Params":
        return Params(self.cfg, self.data.copy())

    def load(self, tensors: dict[str, np.ndarray], prefix: str = "") -> "Params":
        """Copy named arrays (as in a checkpoint) into this buffer, checking every name and shape."""
        for name, view in self.views.items():
            arr = tensors[prefix + name]
            if arr.shape != view.shape:
                raise ValueError(f"{prefix + name}: shape {arr.shape}, expected {view.shape}")
            view[...] = arr
        return self


def init_params(cfg: ModelConfig, rng: np.random.Generator) -> Params:
    """PyTorch's default initialisation: N(0, 1) embeddings, U(-1/sqrt(H), 1/sqrt(H)) recurrent
    weights and biases, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the head."""
    p = Params(cfg)
    for name, view in p.views.items():
        if name == "embedding.weight":
            view[...] = rng.standard_normal(view.shape)
        else:
            fan = cfg.hidden
            view[...] = rng.uniform(-1.0, 1.0, view.shape) / np.sqrt(fan)
    return p
