"""Frozen settings for the model, a training run and sampling: the one home of every default.

The CLI takes its option defaults from here and checkpoints store these as JSON. No numpy, no numba.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

from rnncli.errors import RnncliError

CELLS = ("rnn", "gru", "lstm")  # the kernels know a cell by its index in this tuple
GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # blocks of `hidden` rows in weight_ih / weight_hh
TOKENIZERS = ("char", "byte", "word")
SCHEDULES = ("constant", "cosine", "linear")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise RnncliError(message)


@dataclass(frozen=True)
class ModelConfig:
    """The architecture: what it takes to rebuild the network."""

    vocab_size: int
    cell: str = "lstm"
    layers: int = 2
    hidden: int = 128
    embed: int = 64
    dropout: float = 0.0

    def __post_init__(self):
        _check(self.cell in CELLS, f"unknown cell {self.cell!r}: choose one of {', '.join(CELLS)}")
        _check(self.vocab_size >= 1, "the vocabulary is empty")
        for name in ("layers", "hidden", "embed"):
            _check(getattr(self, name) >= 1, f"--{name} must be at least 1, not {getattr(self, name)}")
        _check(0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1), not {self.dropout}")

    @property
    def gates(self) -> int:
        return GATES[self.cell]

    @property
    def cell_code(self) -> int:
        return CELLS.index(self.cell)


@dataclass(frozen=True)
class TrainConfig:
    """One training run: data layout, optimizer, schedule, when to stop and where to write."""

    batch: int = 50
    seq: int = 50
    lr: float = 2e-3
    lr_schedule: str = "constant"
    lr_min_frac: float = 0.1
    warmup: int = 0
    clip: float = 5.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    steps: int | None = None
    epochs: float | None = None
    time: float | None = None
    val_frac: float = 0.05
    eval_every: int = 200
    tokenizer: str = "char"
    max_vocab: int = 20000
    rng_seed: int = 0
    threads: int | None = None
    out: str = "rnncli.safetensors"

    def __post_init__(self):
        for name in ("batch", "seq", "eval_every", "max_vocab"):
            _check(getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be at least 1")
        _check(self.lr > 0 and math.isfinite(self.lr), f"--lr must be a positive number, not {self.lr}")
        _check(self.clip >= 0, f"--clip must be >= 0 (0 turns clipping off), not {self.clip}")
        _check(0.0 <= self.val_frac < 1.0, f"--val-frac must be in [0, 1), not {self.val_frac}")
        _check(self.lr_schedule in SCHEDULES, f"unknown --lr-schedule: choose one of {', '.join(SCHEDULES)}")
        _check(0.0 <= self.lr_min_frac <= 1.0, "--lr-min-frac must be in [0, 1]")
        _check(self.warmup >= 0, "--warmup must be >= 0")
        _check(self.tokenizer in TOKENIZERS, f"unknown tokenizer: choose one of {', '.join(TOKENIZERS)}")
        _check(self.steps is None or self.steps >= 1, "--steps must be at least 1")
        _check(self.epochs is None or self.epochs > 0, "--epochs must be positive")
        _check(self.time is None or self.time > 0, "--time must be a positive number of seconds")
        _check(self.threads is None or self.threads >= 1, "--threads must be at least 1")

    @property
    def stop_steps(self) -> int | None:
        """Steps asked for, or None; with no stop given at all, 2000 steps."""
        if self.steps is None and self.epochs is None and self.time is None:
            return 2000
        return self.steps


@dataclass(frozen=True)
class SampleConfig:
    """How to draw text from a model."""

    length: int = 500
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    greedy: bool = False
    rng_seed: int | None = None

    def __post_init__(self):
        _check(self.length >= 0, "--length must be >= 0")
        _check(self.temperature >= 0 and math.isfinite(self.temperature), "--temperature must be >= 0")
        _check(self.top_k >= 0, "--top-k must be >= 0 (0 keeps every token)")
        _check(0.0 < self.top_p <= 1.0, "--top-p must be in (0, 1]")


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict):
    """Rebuild a config from stored JSON, ignoring keys a newer or older version added."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})
