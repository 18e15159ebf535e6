"""Parameters under PyTorch's names and layouts, held as views into one flat float32 buffer.

Names are those of a module with children `embedding` (nn.Embedding), `rnn` (nn.RNN/GRU/LSTM with
batch_first=False) and `head` (nn.Linear), so the tensors load into those modules with load_state_dict.
"""

from __future__ import annotations

import numpy as np

from rnncli.model.config import ModelConfig


class Params:
    """A flat float32 buffer and a dict of named views into it (same memory). The buffer lives where
    `backend` (a kernels module: cpu or cuda) keeps arrays; None: a NumPy array, nothing compiled."""

    def __init__(self, cfg: ModelConfig, data=None, backend=None):
        self.cfg, self.backend = cfg, backend
        total = cfg.n_params
        if data is None:
            data = backend.zeros(total) if backend else np.zeros(total, np.float32)
        self.data = data
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
        return (
            v[f"rnn.weight_ih_l{k}"],
            v[f"rnn.weight_hh_l{k}"],
            v[f"rnn.bias_ih_l{k}"],
            v[f"rnn.bias_hh_l{k}"],
        )

    def zeros_like(self) -> "Params":
        return Params(self.cfg, backend=self.backend)

    def copy(self) -> "Params":
        return Params(
            self.cfg, self.backend.copy(self.data) if self.backend else self.data.copy(), self.backend
        )

    def to(self, backend) -> "Params":
        """These parameters where `backend` keeps arrays (the CPU's: the same memory)."""
        return Params(self.cfg, backend.asarray(self.host().data), backend)

    def host(self) -> "Params":
        """These parameters as NumPy arrays (a copy when they live on a device)."""
        return self if self.backend is None else Params(self.cfg, np.asarray(self.backend.to_host(self.data)))

    def load(self, tensors: dict[str, np.ndarray], prefix: str = "") -> "Params":
        """Copy named arrays (as in a checkpoint) into this buffer, checking every name and shape."""
        if self.backend is not None:
            self.backend.copy_into(
                self.data, self.backend.asarray(Params(self.cfg).load(tensors, prefix).data)
            )
            return self
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
