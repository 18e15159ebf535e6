"""Global-norm gradient clipping, Adam and the learning-rate schedule, on flat float32 buffers."""

from __future__ import annotations

import math

import numpy as np

from rnncli.model.config import TrainConfig


class Adam:
    """torch.optim.Adam without weight decay, after torch.nn.utils.clip_grad_norm_-style clipping."""

    def __init__(self, size: int, cfg: TrainConfig, backend=None):
        """Moments of `size` parameters, kept where `backend` (a kernels module; None: the CPU's)
        keeps arrays, as the parameters and gradients given to step() are."""
        if backend is None:
            from rnncli.kernels.cpu import backend
        self.cfg, self.K = cfg, backend
        self.m = backend.zeros(size)
        self.v = backend.zeros(size)
        self.step_count = 0

    def grad_norm(self, grads) -> float:
        """The gradient's global norm (before clipping); the caller checks it is finite."""
        return math.sqrt(self.K.sum_squares(grads))

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float, norm: float | None = None) -> float:
        """Update params in place, the gradient clipped by its global norm (grad_norm's, if the
        caller has it already); returns that norm."""
        c = self.cfg
        norm = self.grad_norm(grads) if norm is None else norm
        scale = min(1.0, c.clip / (norm + 1e-6)) if c.clip > 0 else 1.0
        self.step_count += 1
        self.K.adam_update(
            params, grads, self.m, self.v, lr, c.beta1, c.beta2, c.eps, float(self.step_count), scale
        )
        return norm


def learning_rate(cfg: TrainConfig, progress: float, step: int, top: float | None = None) -> float:
    """lr for a step: linear warm-up over cfg.warmup steps, then the schedule over progress in [0, 1]
    (the fraction of the run done, by steps, epochs or time), decaying from `top` (cfg.lr unless
    given: a resumed run's extension starts where the run was) to cfg.lr * lr_min_frac."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(max(progress, 0.0), 1.0)
    hi = cfg.lr if top is None else top
    lo = min(hi, cfg.lr * cfg.lr_min_frac)
    if cfg.lr_schedule == "cosine":
        return lo + (hi - lo) * 0.5 * (1.0 + math.cos(math.pi * p))
    if cfg.lr_schedule == "linear":
        return hi - (hi - lo) * p
    return hi
