"""Training from Python: `train` sets a run up (reading the corpus, choosing the recipe, claiming
the checkpoint path) and returns a `Run`, whose events are what `rnncli train` shows. The command
line calls these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Iterator

from rnncli.model.config import ModelConfig, TrainConfig
from rnncli.model.settings import ModelSettings, TrainSettings
from rnncli.run.options import RunOptions


@dataclass(frozen=True)
class StepEvent:
    """One training step done. val_loss and best_val_loss are there (not None) after a validation;
    tokens_per_s is None until the rate can be told; progress runs from 0 to 1."""

    step: int
    epoch: int
    train_loss: float
    lr: float
    grad_norm: float
    tokens_per_s: float | None
    elapsed_s: float
    progress: float
    val_loss: float | None = None
    best_val_loss: float | None = None

    def to_json(self) -> dict:
        """As `rnncli train --json` prints it (the validation's keys only after a validation)."""
        out = {"event": "step", **asdict(self)}
        return {k: v for k, v in out.items() if v is not None or k not in ("val_loss", "best_val_loss")}


@dataclass(frozen=True)
class DoneEvent:
    """The run ended (its stop reached, or early stopping) and its checkpoint is written.
    elapsed_s and session_steps count this session; run_elapsed_s and step the whole run."""

    step: int
    checkpoint: str
    elapsed_s: float
    best_val_loss: float | None
    tokens_per_s: float | None
    train_s: float
    tokens_seen: int
    compile_s: float
    early_stop: bool
    best_step: int | None
    session_steps: int
    run_elapsed_s: float

    def to_json(self) -> dict:
        return {"event": "done", **asdict(self)}


def _event(ev: dict) -> StepEvent | DoneEvent:
    cls = StepEvent if ev["event"] == "step" else DoneEvent
    return cls(**{f.name: ev.get(f.name) for f in fields(cls)})


def train(
    corpus: list[str] | str,
    model: ModelSettings = ModelSettings(),
    train: TrainSettings = TrainSettings(),
    run: RunOptions = RunOptions(),
    *,
    plan: bool = False,
    on_compile=None,
) -> Run:
    """Set up a training run on the text files `corpus` ("-": standard input): a new one, or with
    run.resume the saved run continued. Settings not given are chosen by the automatic recipe.
    Nothing trains until the Run is iterated (or `finish()`ed). plan=True: only settle the recipe,
    for Run.plan(); nothing is written. on_compile: called when the recipe's speed probe is about
    to compile the kernels (a cold cache).

    >>> with rnncli.train("notes.txt", train=TrainSettings(steps=30)) as run:
    ...     done = run.finish()
    """
    from rnncli.run.runs import More
    from rnncli.run.train import Trainer

    sources = [corpus] if isinstance(corpus, str) else list(corpus)
    more = More.parse(run.more) if run.more is not None else None
    with run.applied():
        trainer = Trainer(
            sources,
            model.given(),
            {**train.given(), **run.train_fields()},
            run.resume,
            run.allow_new_corpus,
            run.distributed,
            plan,
            on_compile=on_compile,
            force=run.force,
            more=more,
        )
    return Run(trainer, run)


class Run:
    """A training run, set up and holding its checkpoint path (release it with close(), or `with`).

    Iterate it for StepEvent after each step and a last DoneEvent; stop() ends it after the step
    under way, saved. notes: warnings for people (text the vocabulary lacks, a corpus changed);
    replacing: what --force replaces, if anything; recipe: the automatic recipe's choice and why."""

    def __init__(self, trainer, options: RunOptions):
        self.trainer, self.options = trainer, options
        self.notes: list[str] = list(trainer.notes)
        self.replacing: str | None = trainer.replacing
        self.recipe: dict | None = trainer.recipe
        self._stop = False

    @property
    def config(self) -> ModelConfig:
        return self.trainer.model.cfg

    @property
    def train_config(self) -> TrainConfig:
        return self.trainer.cfg

    @property
    def checkpoint(self) -> str:
        return str(self.trainer.cfg.out)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.trainer.close()

    def events(self) -> Iterator[dict]:
        """The events as JSON-ready dicts (`rnncli train --json`'s lines)."""
        with self.options.applied():
            for ev in self.trainer.run():
                yield ev
                if self._stop and ev["event"] == "step":
                    self.trainer.save()
                    return

    def __iter__(self) -> Iterator[StepEvent | DoneEvent]:
        return (_event(ev) for ev in self.events())

    def stop(self) -> None:
        """End after the step under way; the run is saved there and can be resumed."""
        self._stop = True
        self.trainer.stop_asked = True

    def finish(self) -> DoneEvent | None:
        """Train to the end; the last event (None if stopped first)."""
        last = None
        for event in self:
            last = event
        return last if isinstance(last, DoneEvent) else None

    def save(self) -> str:
        """Write the run as it is now (resumable exactly from here); the checkpoint's path."""
        return self.trainer.save()

    def plan(self) -> dict:
        """What `rnncli train --plan --json` prints: for a new run, the recipe and what it should
        reach; for a resumed one, where it is and where it will stop."""
        return _resume_plan(self.trainer) if self.options.resume else _new_plan(self.trainer)


def _new_plan(trainer) -> dict:
    from rnncli.model.recipe import MODEL_FIELDS

    recipe, cfg = trainer.recipe, trainer.cfg
    if recipe is None:  # --recipe plain
        recipe = {
            "model": {k: getattr(trainer.model.cfg, k) for k in MODEL_FIELDS},
            "train": {
                k: getattr(cfg, k) for k in ("batch", "seq", "lr", "lr_schedule", "steps", "epochs", "time")
            },
        }
    return dict(
        recipe,
        parameters=trainer.model.cfg.n_params,
        windows_per_epoch=trainer.streams.n_windows,
        compile_s=trainer.compile_s,
    )


def _resume_plan(run) -> dict:
    cfg = run.cfg
    stop = {k: getattr(cfg, k) for k in ("time", "steps", "epochs") if getattr(cfg, k) is not None} or {
        "steps": cfg.stop_steps
    }
    rate = run.tokens_seen / run.elapsed_before if run.elapsed_before > 0 else None
    tokens_left = []
    if "steps" in stop:
        tokens_left.append((stop["steps"] - run.step) * cfg.batch * cfg.seq)
    if "epochs" in stop:
        tokens_left.append(
            (stop["epochs"] - run.done_in("epochs", 0.0)) * run.streams.n_windows * cfg.batch * cfg.seq
        )
    if "time" in stop and rate:
        tokens_left.append((stop["time"] - run.elapsed_before) * rate)
    tokens = max(0.0, min(tokens_left)) if tokens_left else None
    return {
        "resume": True,
        "step": run.step,
        "elapsed_s": run.elapsed_before,
        "stop": stop,
        "steps_left": None if tokens is None else round(tokens / (cfg.batch * cfg.seq)),
        "seconds_left": tokens / rate if tokens is not None and rate else None,
        "tokens_per_s": rate,
        "lr_now": run.lr_at(0.0),
        "lr_end": cfg.lr * cfg.lr_min_frac if cfg.lr_schedule != "constant" else cfg.lr,
        "lr_schedule": cfg.lr_schedule,
        "patience": cfg.patience,
        "patience_from": run.patience_from,
    }
