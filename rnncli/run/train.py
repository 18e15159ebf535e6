"""The training loop: truncated BPTT over char-rnn's stream layout, Adam, validation, checkpoints.

It never prints: `Trainer.run()` yields events (dicts) and the caller decides what people see.
A checkpoint is written at every validation and at the end; `save()` may be called at any moment
(say, on Ctrl-C) and the run resumes exactly from it.
"""

from __future__ import annotations

import math
import time
from collections import deque

import numpy as np

from rnncli.base import pathcheck
from rnncli.base.errors import RnncliError
from rnncli.model.config import ModelConfig, TrainConfig
from rnncli.model.model import Model
from rnncli.model.optim import learning_rate
from rnncli.model.params import Params, init_params
from rnncli.model.step import TrainStep
from rnncli.run import runs, train_setup, train_state
from rnncli.run.curve import LossCurve
from rnncli.run.distributed import EXTRA, world
from rnncli.run.evaluate import score_streams
from rnncli.run.runs import More
from rnncli.run.train_setup import STOPS
from rnncli.store import checkpoint

RESUMABLE = STOPS | {"eval_every", "patience", "out", "threads", "device"}


class Trainer:
    """A training run over a corpus: a new one (configs given) or one resumed from a checkpoint.
    It holds the lock on its checkpoint path from construction to close() (or `with`)."""

    clock = staticmethod(
        time.perf_counter
    )  # seconds, for the time budget and the rates (tests give their own)

    def __init__(
        self,
        sources: list[str],
        model: dict,
        train: dict,
        resume: str | None = None,
        allow_new_corpus: bool = False,
        distributed: bool | None = None,
        plan: bool = False,
        on_compile=None,
        force: bool = False,
        more: More | None = None,
    ):
        """model, train: the settings given explicitly (others take config defaults, or the
        checkpoint's when resuming, where only RESUMABLE settings may change; a resumed run
        writes to the checkpoint it came from unless `out` is given). distributed: one rank of an
        MPI job (True), one process (False), or whichever the environment says (None). plan: only
        settle the recipe (measuring the speed whatever the stop, so that it predicts the run's
        length); nothing will be written. on_compile: called before the kernels are first compiled
        (a cold disk cache), when that happens while the recipe is settled. force: replace another
        run's checkpoint at the output path (else refused, runs.claim). more: with resume, run this
        much more of one stop beyond where the run is (runs.More)."""
        if not resume:  # bad flags are named before any corpus is read
            ModelConfig(vocab_size=1, **model)
            TrainConfig(**train)
        elif set(train) - RESUMABLE or model:
            fixed = sorted(set(train) - RESUMABLE) + sorted(model)
            raise RnncliError(f"--resume continues a run with its own settings; drop {', '.join(fixed)}")
        if allow_new_corpus and not resume:
            raise RnncliError("--allow-new-corpus goes with --resume")
        if more is not None and (not resume or STOPS & set(train)):
            raise RnncliError(
                "--more goes with --resume, without --time, --steps or --epochs (a whole-run stop)"
                if resume
                else "--more goes with --resume; a new run takes --time, --steps or --epochs"
            )
        self.sources, self.more, self.replacing = list(sources), more, None
        from rnncli.kernels.device import backend

        self.world = world(distributed)
        self.K = backend(train.get("device") or "auto")  # a missing GPU is named before any file is read
        out = train.get("out") or resume or TrainConfig.out
        if not plan:  # a folder, a missing folder, the corpus itself: named before any work
            pathcheck.writable_file(out, "the checkpoint", sources)
        # before reading a checkpoint another run may be writing; only the lead rank writes
        self.lock = checkpoint.WriteLock(out) if self.world.lead and not plan else None
        self.on_compile = on_compile
        try:
            self.replacing = None if plan else runs.claim(out, resume, force, self.sources)
            train_setup.prepare(self, sources, model, dict(train, out=out), resume, allow_new_corpus, plan)
        except BaseException:
            self.close()
            raise

    def _start(self, mcfg: ModelConfig, saved) -> None:
        cfg = self.cfg
        self.K.use_threads(self.threads)
        self.rng = np.random.default_rng(cfg.rng_seed)
        self.model = Model(init_params(mcfg, self.rng), self.K)
        # the gradients, then the slots the ranks exchange with them (distributed.EXTRA)
        self._reduced = self.K.zeros(mcfg.n_params + EXTRA)
        grads = Params(mcfg, self._reduced[: mcfg.n_params], self.K)
        self.train_step = TrainStep(self.model, cfg, self.streams.B, grads)  # (it carries the streams' state)
        self.stop_asked = self.interrupted = False
        self.best, self.best_step, self.saved_step, self.finished = None, None, None, False
        self.early_stop = False
        self.extension, self.patience_from = (
            None,
            0,
        )  # (--more's stretch of schedule; where patience counts from)
        self._mask_buf = None
        self.step, self.epoch, self.window, self.tokens_seen = 0, 0, 0, 0
        self.best_val, self.history, self.elapsed_before = math.inf, [], 0.0
        self.since_eval: list[float] = []  # train losses since the last validation
        self.curve = LossCurve()  # every step's, averaged in buckets
        if saved:
            train_state.restore(self, *saved)

    def close(self) -> None:
        """Give up the claim on the checkpoint path (also done when the process ends)."""
        if self.lock is not None:
            self.lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- checkpoints -------------------------------------------------------------------------
    def done_in(self, kind: str, clock: float) -> float:
        """How far the run is in a stop's unit: seconds of training, steps or epochs."""
        if kind == "time":
            return self.elapsed_before + clock
        return float(self.step) if kind == "steps" else self.epoch + self.window / self.streams.n_windows

    def lr_at(self, clock: float) -> float:
        """This step's learning rate: the schedule over the whole run, or over --more's extension."""
        ext = self.extension
        if ext is None:
            return learning_rate(self.cfg, self.progress(clock), self.step)
        stop = getattr(self.cfg, ext["kind"]) or ext["start"]
        span = stop - ext["start"]
        return learning_rate(
            self.cfg,
            (self.done_in(ext["kind"], clock) - ext["start"]) / span if span > 0 else 1.0,
            self.step,
            top=ext["lr"],
        )

    def save(self) -> str:
        """Write the checkpoint (train_state.save): every rank calls it; the lead writes."""
        return train_state.save(self)

    # --- the loop ----------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return self.clock() - self._t0 if hasattr(self, "_t0") else 0.0

    def progress(self, clock: float | None = None) -> float:
        """Fraction of the run done, by whichever stop criterion is nearest (clock: the seconds
        to count, when not this process's own: all ranks go by the lead's)."""
        cfg, done = self.cfg, [0.0]
        if cfg.stop_steps:
            done.append(self.step / cfg.stop_steps)
        if cfg.epochs:
            done.append((self.epoch + self.window / self.streams.n_windows) / cfg.epochs)
        if cfg.time:  # (a resumed run's time so far counts: its schedule and its stop go on where they were)
            done.append((self.elapsed_before + (self._elapsed() if clock is None else clock)) / cfg.time)
        return max(done)

    def validate(self) -> float | None:
        if self.val is None:
            return None
        total, count = score_streams(self.model, self.val)
        return total / count

    def _masks(self, T: int):
        """Inverted-dropout masks for this window, (L-1, T, B, H), in memory reused every step."""
        mcfg = self.model.cfg
        if mcfg.dropout <= 0 or mcfg.layers < 2:
            return None
        B = (
            self.cfg.batch
        )  # every rank draws the whole batch's masks (the same random stream) and keeps its own
        shape = (mcfg.layers - 1, T, B, mcfg.hidden)
        if self._mask_buf is None or self._mask_buf.shape != shape:
            self._mask_buf = np.empty(shape, np.float32)
        m = self._mask_buf
        keep = 1.0 - mcfg.dropout
        self.rng.random(dtype=np.float32, out=m)
        np.less(m, keep, out=m)
        m *= np.float32(1.0 / keep)
        b0, b1 = self.world.part(B)
        return m if b1 - b0 == B else m[:, :, b0:b1]

    def _diverged(self, what: str, value, step: int | None = None) -> RnncliError:
        """The error that ends a run whose numbers stopped being finite; the weights are not updated
        with them, and the checkpoint on disk (the last good state) is left as it is."""
        cfg = self.cfg
        kept = (
            f"{cfg.out} keeps the last good state (step {self.saved_step})"
            if self.saved_step is not None
            else "no checkpoint was written"
        )
        clip = f"a smaller --clip (now {cfg.clip:g})" if cfg.clip > 0 else "clipping (--clip 1)"
        step = self.step + 1 if step is None else step
        return RnncliError(
            f"training diverged at step {step}: the {what} became {value}; {kept}; "
            f"try a lower --lr (this run's is {cfg.lr:g}) or {clip}"
        )

    def run(self):
        """Train until a stop criterion holds; yields a dict per step (and a last one, 'done')."""
        cfg, model, step = self.cfg, self.model, self.train_step
        self._t0 = self.clock()
        recent = deque(maxlen=50)  # (tokens, seconds) of the latest steps, for the live rate
        train_s, train_tokens = 0.0, 0  # the whole run's steps, validation and saving left out
        finished, first_step = self.progress() >= 1.0, self.step
        # this run's first step compiles (the rest of) the kernels
        cold = self.cold or self.K.compiles_first(self.streams.B, model.params.layer(0)[1])
        while not finished:
            t_start = self.clock()
            if self.window >= self.streams.n_windows:
                self.epoch, self.window = self.epoch + 1, 0
                step.reset()
            ids, targets = self.streams.window(self.window)
            clock = self._elapsed()
            loss = step.backward(ids, targets, self._masks(ids.shape[0]))
            if self.world.size > 1:  # the one exchange: gradients averaged, the lead's clock, stop votes
                loss, clock, stops = self.world.average(
                    self.K, self._reduced, self.streams.B / cfg.batch, [loss, clock, float(self.stop_asked)]
                )
                self.interrupted = stops > 0
            lr = self.lr_at(clock)
            norm = step.grad_norm()
            for what, value in (("loss", loss), ("gradient norm", norm)):
                if not math.isfinite(value):
                    raise self._diverged(what, value)
            step.update(lr, norm)
            self.step += 1
            self.window += 1
            tokens = ids.shape[0] * cfg.batch  # the whole batch's, on every rank
            self.tokens_seen += tokens
            self.since_eval.append(loss)
            self.curve.add(self.step, loss)
            seconds = self.clock() - t_start
            if cold:  # the one-time compile is not part of the time budget (nor of the rates)
                cold, self.compile_s = False, self.compile_s + seconds
                self._t0 += seconds
            else:
                train_s, train_tokens = train_s + seconds, train_tokens + tokens
            if self.step > 1 or self.elapsed_before:  # the first step may include compiling
                recent.append((tokens, seconds))
            event = {
                "event": "step",
                "step": self.step,
                "epoch": self.epoch,
                "train_loss": loss,
                "lr": lr,
                "grad_norm": norm,
                "tokens_per_s": _rate(recent),
                "elapsed_s": self._elapsed(),
                "progress": min(1.0, self.progress()),
            }
            # ranks must agree: with several, the time criterion goes by the lead's clock at this step's start
            finished = self.progress(None if self.world.size == 1 else clock) >= 1.0
            if self.step % cfg.eval_every == 0 or finished:
                val = self.world.share(self.validate())  # (the lead's: all ranks keep the same best and stop)
                if val is not None and not math.isfinite(val):
                    raise self._diverged("validation loss", val)
                self.history.append([self.step, float(np.mean(self.since_eval)), val])
                self.since_eval = []
                if val is not None:
                    event["val_loss"] = val
                    if val < self.best_val:
                        self.best_val, self.best_step = val, self.step
                        self.best = model.params.copy()
                    event["best_val_loss"] = self.best_val
                    if cfg.patience and self._since_best() >= cfg.patience:
                        finished = self.early_stop = True
                self.save()
            yield event
            if self.interrupted:  # a rank was asked to stop (a signal): all stop after the same step
                return
        self.finished = True
        yield {
            "event": "done",
            "step": self.step,
            "checkpoint": str(self.cfg.out),
            "elapsed_s": self._elapsed(),
            "best_val_loss": self.best_val if math.isfinite(self.best_val) else None,
            "tokens_per_s": _rate([(train_tokens, train_s)]),
            "train_s": train_s,
            "tokens_seen": self.tokens_seen,
            "compile_s": self.compile_s,
            "early_stop": self.early_stop,
            "best_step": self.best_step,
            "session_steps": self.step - first_step,
            "run_elapsed_s": self.elapsed_before + self._elapsed(),
        }

    def _since_best(self) -> int:
        """Validations since the one that set the best loss (they are in the history, so resuming
        keeps the count)."""
        since = max(self.best_step or 0, self.patience_from)
        return sum(1 for step, _, val in self.history if val is not None and step > since)


def _rate(recent) -> float | None:
    seconds = sum(s for _, s in recent)
    return sum(n for n, _ in recent) / seconds if seconds > 0 else None
