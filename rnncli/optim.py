"""Global-norm gradient clipping, Adam and the learning-rate schedule, on flat float32 buffers."""
from __future__ import annotations

import math

import numpy as np

from rnncli.config import TrainConfig
from rnncli.kernels import cpu as K
from rnncli.model import numba_threads


class Adam:
    """torch.optim.Adam without weight decay, after torch.nn.utils.clip_grad_norm_-style clipping."""

    def __init__(self, size: int, cfg: TrainConfig):
        self.cfg = cfg
        self.m = np.zeros(size, np.float32)
        self.v = np.zeros(size, np.float32)
        self.step_count = 0

    @staticmethod
    def grad_norm(grads: np.ndarray) -> float:
        """The gradient's global norm (before clipping); the caller checks it is finite."""
        return math.sqrt(K.sum_squares(grads, numba_threads()))

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float, norm: float | None = None) -> float:
        """Update params in place, the gradient clipped by its global norm (grad_norm's, if the
        caller has it already); returns that norm."""
        c = self.cfg
        norm = self.grad_norm(grads) if norm is None else norm
        scale = min(1.0, c.clip / (norm + 1e-6)) if c.clip > 0 else 1.0
        self.step_count += 1
        K.adam_update(params, grads, self.m, self.v, lr, c.beta1, c.beta2, c.eps, float(self.step_count), scale)
        return norm


def learning_rate(cfg: TrainConfig, progress: float, step: int) -> float:
    """lr for a step: linear warm-up over cfg.warmup steps, then the schedule over progress in [0, 1]
    (the fraction of the run done, by steps, epochs or time), decaying to lr * lr_min_frac."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(max(progress, 0.0), 1.0)
    lo = cfg.lr * cfg.lr_min_frac
    if cfg.lr_schedule == "cosine":
        return lo + (cfg.lr - lo) * 0.5 * (1.0 + math.cos(math.pi * p))
    if cfg.lr_schedule == "linear":
        return cfg.lr - (cfg.lr - lo) * p
    return cfg.lr
