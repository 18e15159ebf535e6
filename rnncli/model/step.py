"""One training step on a (T, B) window: forward, loss, backward, global-norm clipping and Adam, the
hidden state carried to the next window. Training, bench and the recipe's speed probe all run this one.

What a run does around a step (choosing windows, dropout masks, the ranks' gradient exchange between
backward and update, validation, checkpoints) is run/train.py's, not this file's.
"""

from __future__ import annotations

from rnncli.model.config import TrainConfig
from rnncli.model.model import Model
from rnncli.model.optim import Adam
from rnncli.model.params import Params


class TrainStep:
    """A model, its gradients, Adam's moments and the carried state (h, c) of `batch` streams.

    A step is `backward` (the window's loss; the gradients into `grads`) then `update` (clip, Adam,
    and the state moves on to the window's last); `__call__` is both. A caller that must act between
    the two (average the gradients over ranks, refuse a non-finite norm) calls them apart."""

    def __init__(self, model: Model, cfg: TrainConfig, batch: int, grads: Params | None = None):
        """cfg: Adam's and clipping's settings; grads: where the gradients go (None: a new buffer;
        a run gives views into the buffer its ranks exchange)."""
        self.model = model
        self.grads = model.params.zeros_like() if grads is None else grads
        self.adam = Adam(model.cfg.n_params, cfg, model.K)
        self.batch = batch
        self.reset()
        self._window: tuple[int, int] | None = None  # (T, B) of the last backward

    def reset(self) -> None:
        """Zero the carried state (a new epoch's streams start afresh)."""
        self.h, self.c = self.model.zero_state(self.batch)  # (L, B, H) each

    def backward(self, ids, targets, masks=None) -> float:
        """Mean cross-entropy of targets (T, B) given ids (T, B) from the carried state; every
        parameter's gradient into `grads`. masks: the inverted-dropout masks (model.forward's)."""
        self._window = ids.shape
        return self.model.loss_and_grads(ids, targets, self.h, self.c, self.grads, masks)

    def grad_norm(self) -> float:
        """The global norm of the gradients in `grads` (before clipping)."""
        return self.adam.grad_norm(self.grads.data)

    def update(self, lr: float, norm: float | None = None) -> float:
        """Carry the state to the last backward's window end, then clip and update the weights with
        Adam at `lr` (norm: grad_norm's, when the caller has it); returns the norm."""
        self.h, self.c = self.model.final_state(*self._window)
        return self.adam.step(self.model.params.data, self.grads.data, lr, norm)

    def __call__(self, ids, targets, lr: float, masks=None) -> tuple[float, float]:
        """One whole step: (the window's mean loss, the gradient norm before clipping)."""
        loss = self.backward(ids, targets, masks)
        return loss, self.update(lr)
