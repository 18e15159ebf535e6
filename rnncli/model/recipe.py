"""The automatic recipe: the model and schedule that a budget buys on this corpus and this machine.

`choose` is a pure function of the corpus size, the vocabulary, the stop rule, the measured speed
and the settings the user gave (each of them wins over the choice), so it is unit-tested as it
stands. `probe_speed` times a few training steps of probe models and turns them into a rate that
predicts the others. No printing; no numba at import.

The rules, and the runs behind them (tinyshakespeare, 2-core Zen 2; README "Choosing the recipe"):
- Windows: the largest batch x sequence, up to 64 x 100, that still gives at least MIN_WINDOWS
  windows an epoch (fewer, larger steps waste a small corpus).
- Size: the largest hidden width whose run sees at least TOKENS_PER_PARAM tokens per parameter and
  holds at most PARAMS_PER_TOKEN parameters per training token: bigger models learn more per token,
  until the budget cannot train them or the text cannot fill them.
- Dropout between layers, from how hard the run leans on its text: epochs x parameters per token.
- Adam with a short linear warm-up and a cosine decay that ends when the budget ends; about
  VALIDATIONS validations, and early stopping after PATIENCE of them without a new best.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from rnncli.base.errors import RnncliError
from rnncli.model.config import ModelConfig, to_dict

HIDDEN = (16, 32, 48, 64, 96, 128, 192, 256, 320, 384, 448, 512, 640, 768, 1024)
# (batch, seq) in order of preference: long windows, but 32+ rows before 100 steps (the products'
# speed needs rows)
WINDOWS = ((64, 100), (32, 100), (32, 64), (16, 64), (16, 32), (8, 32), (8, 16), (4, 16), (4, 8), (2, 8))
MIN_WINDOWS = 50
TOKENS_PER_PARAM = 4.5
PARAMS_PER_TOKEN = 3.0
VALIDATIONS = 12
MIN_STEPS = 12  # a time that buys fewer steps than this is refused (one step a validation, no schedule)
PATIENCE = 4
DEFAULT_TIME = 300.0  # the automatic recipe's run when no --time, --steps or --epochs is given
EVAL_COST = 1 / 3  # a validated token costs about this share of a trained one (no backward pass)
# what the recipe chooses where nothing is given and nothing needs measuring (the CLI's help reads these)
CELL, LAYERS, EMBED, WIDE_EMBED, WIDE_VOCAB = (
    "gru",
    2,
    64,
    256,
    512,
)  # the embedding: WIDE_EMBED over WIDE_VOCAB
LR_SCHEDULE, LR_MIN_FRAC = "cosine", 0.05
LR_NARROW, LR_WIDE, LR_WIDTH = 3e-3, 2e-3, 256  # Adam's rate: LR_NARROW up to LR_WIDTH units, else LR_WIDE
MODEL_FIELDS = ("cell", "layers", "hidden", "embed", "dropout")
TRAIN_FIELDS = (
    "batch",
    "seq",
    "lr",
    "lr_schedule",
    "lr_min_frac",
    "warmup",
    "eval_every",
    "patience",
    "time",
)
clock = time.perf_counter  # what `probe_speed` times steps with (tests give their own)


@dataclass(frozen=True)
class Speed:
    """What a training token costs on this machine, measured (`probe_speed`): the multiply-adds of the
    products, the vocabulary's pointwise work (softmax and its gradient: an exp per entry per token,
    which a narrow model over a word vocabulary spends most of its time on) and the optimizer's work
    per parameter per step (Adam and the norm, spread over the step's tokens)."""

    macs_per_s: float
    vocab_s: float = 0.0  # seconds per token per vocabulary entry, beyond the head's products
    param_s: float = 0.0  # seconds per parameter per step

    def token_seconds(self, cfg: ModelConfig, tokens_per_step: int, window: int | None = None) -> float:
        """window: the tokens of one process's share of a step (layer 0's table is made once for
        them; ModelConfig.macs_per_token); None: the whole step's, as in one process."""
        return (
            cfg.macs_per_token(window or tokens_per_step, training=True) / self.macs_per_s
            + self.vocab_s * cfg.vocab_size
            + self.param_s * cfg.n_params / max(1, tokens_per_step)
        )


@dataclass(frozen=True)
class Corpus:
    """What the choice needs to know about the text."""

    train_tokens: int
    val_tokens: int  # those one validation scores
    vocab_size: int


@dataclass(frozen=True)
class Recipe:
    model: dict  # every ModelConfig setting but vocab_size
    train: dict  # the TrainConfig settings this recipe decides (the user's own among them)
    chosen: tuple  # the names the recipe set; the others the user gave
    tokens: float  # predicted training tokens seen
    epochs: float
    seconds: float | None  # predicted training time (None: speed unknown)
    tokens_per_s: float | None
    why: str = field(default="")

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "train": self.train,
            "chosen": list(self.chosen),
            "tokens": self.tokens,
            "epochs": self.epochs,
            "seconds": self.seconds,
            "tokens_per_s": self.tokens_per_s,
            "why": self.why,
        }


SEQS = (100, 64, 32, 16, 8)
BATCHES = (64, 32, 16, 8, 4, 2, 1)


def windows(train_tokens: int, world_size: int = 1) -> tuple[int, int]:
    """(batch, seq): the first of WINDOWS with MIN_WINDOWS windows an epoch and a stream per rank;
    with more ranks than 64 streams, a stream per rank and the longest sequence that still fits."""
    for batch, seq in WINDOWS:
        if batch * seq * MIN_WINDOWS <= train_tokens and batch >= world_size:
            return batch, seq
    if world_size > WINDOWS[0][0]:
        return world_size, _fit(SEQS, world_size, train_tokens)
    return max(1, world_size), 8


def _fit(options, other: int, train_tokens: int) -> int:
    """The first of options that, times `other`, still gives MIN_WINDOWS windows (else the last)."""
    return next((x for x in options if x * other * MIN_WINDOWS <= train_tokens), options[-1])


def layout(corpus: Corpus, train: dict, world_size: int = 1) -> tuple[int, int]:
    """(batch, seq): the user's; with one of them given, the other fitted to it; else windows()'s."""
    if "batch" in train and "seq" in train:
        return train["batch"], train["seq"]
    if "batch" in train:
        return train["batch"], _fit(SEQS, train["batch"], corpus.train_tokens)
    if "seq" in train:
        batches = [b for b in BATCHES if b >= world_size] or [world_size]
        return _fit(batches, train["seq"], corpus.train_tokens), train["seq"]
    return windows(corpus.train_tokens, world_size)


def stop_rule(train: dict) -> dict:
    """The stop settings given (steps, epochs, time), or DEFAULT_TIME when none is."""
    stop = {k: train[k] for k in ("steps", "epochs", "time") if train.get(k) is not None}
    return stop or {"time": DEFAULT_TIME}


def describe_stop(stop: dict) -> str:
    """'600 s', '2000 steps', '3 epochs, 600 s' (the order given)."""
    return ", ".join(f"{v:g} s" if k == "time" else f"{v:g} {k}" for k, v in stop.items() if v is not None)


def base_model(corpus: Corpus, model: dict) -> dict:
    """The architecture before the width: a 2-layer GRU (embedding 64, or 256 for vocabularies over
    512), under the user's settings."""
    return {
        "cell": CELL,
        "layers": LAYERS,
        "embed": EMBED if corpus.vocab_size <= WIDE_VOCAB else WIDE_EMBED,
        "dropout": 0.0,
        **model,
    }


def sized(corpus: Corpus, model: dict, hidden: int) -> ModelConfig:
    """base_model at a width. Over a large vocabulary the embedding is no wider than the hidden
    layer: a narrow model with 256-wide word vectors spends its parameters on the table, not the network."""
    base = base_model(corpus, model)
    embed = (
        base["embed"] if "embed" in model or corpus.vocab_size <= WIDE_VOCAB else min(base["embed"], hidden)
    )
    return ModelConfig(vocab_size=corpus.vocab_size, **dict(base, hidden=hidden, embed=embed))


def _speed(speed) -> "Speed | None":
    return speed if speed is None or isinstance(speed, Speed) else Speed(float(speed))


def _tokens(
    model: ModelConfig,
    corpus: Corpus,
    stop: dict,
    batch: int,
    seq: int,
    evals: int,
    speed: Speed | None,
    window: int | None = None,
):
    """Predicted training tokens and seconds under the stop rule (the nearest of those given);
    window: one rank's share of a step (Speed.token_seconds)."""
    t_token = speed.token_seconds(model, batch * seq, window) if speed else None
    limits = []
    if "steps" in stop:
        limits.append(stop["steps"] * batch * seq)
    if "epochs" in stop:
        limits.append(stop["epochs"] * corpus.train_tokens)
    if "time" in stop and t_token:
        validating = evals * corpus.val_tokens * EVAL_COST * t_token
        limits.append(max(0.0, stop["time"] - validating) / t_token)
    tokens = min(limits) if limits else math.inf
    return tokens, (tokens * t_token if t_token and math.isfinite(tokens) else None)


def _dropout(epochs: float, params: int, train_tokens: int) -> float:
    """More dropout the more the run leans on its text: none under 2 epochs, then 0.08 per doubling
    of epochs x parameters per token above 1, up to 0.5, in steps of 0.05."""
    pressure = epochs * params / max(1, train_tokens)
    if epochs < 2 or pressure <= 1:
        return 0.0
    return min(0.5, round(0.08 * math.log2(pressure) / 0.05) * 0.05)


def choose(
    corpus: Corpus, model: dict, train: dict, speed: Speed | float | None, world_size: int = 1
) -> Recipe:
    """The recipe for a new run. model, train: the settings the user gave (they win); speed: the
    measured Speed (`training_speed`; a number is multiply-adds per second alone), needed when the stop
    is a time. A time too short for MIN_STEPS steps of the model is an RnncliError."""
    stop, speed = stop_rule(train), _speed(speed)
    if "time" in stop and not speed:
        raise ValueError("a time budget needs the measured speed")
    batch, seq = layout(corpus, train, world_size)
    window = batch // max(1, world_size) * seq  # the lead rank's share of a step (distributed.Mpi.part)
    widths = [model["hidden"]] if "hidden" in model else list(HIDDEN)
    best, limit = None, "the width you gave" if "hidden" in model else f"the widest candidate ({HIDDEN[-1]})"
    for hidden in widths:
        cfg = sized(corpus, model, hidden)
        tokens, seconds = _tokens(cfg, corpus, stop, batch, seq, VALIDATIONS, speed, window)
        trainable = tokens >= TOKENS_PER_PARAM * cfg.n_params
        fillable = cfg.n_params <= PARAMS_PER_TOKEN * corpus.train_tokens
        if not (trainable and fillable) and len(widths) > 1:
            bound = (
                f"what the budget can train ({TOKENS_PER_PARAM:g}+ tokens a parameter)"
                if not trainable
                else f"what the text can fill (at most {PARAMS_PER_TOKEN:g} parameters a training token)"
            )
            limit = (
                f"the widest within {bound}"
                if best
                else f"the narrowest ({hidden}), though even it exceeds {bound}"
            )
        if best is None or (trainable and fillable):
            best = (cfg, tokens, seconds)
        if not (trainable and fillable):
            break
    cfg, tokens, seconds = best
    steps = int(tokens // (batch * seq))
    by_time = (
        _tokens(cfg, corpus, {"time": stop["time"]}, batch, seq, VALIDATIONS, speed, window)[0]
        if "time" in stop
        else math.inf
    )
    if by_time <= tokens and steps < MIN_STEPS:  # (the time is what ends the run, and it ends it at once)
        rate = 1 / speed.token_seconds(cfg, batch * seq, window)
        raise RnncliError(
            f"--time {stop['time']:g} buys about {steps} steps of a {cfg.layers}x{cfg.hidden} {cfg.cell} "
            f"on this machine ({batch}x{seq} tokens a step at about {rate / 1000:.1f}k tokens/s); "
            "give more time, or a smaller model or batch"
        )
    epochs = tokens / corpus.train_tokens
    dropout = model.get(
        "dropout", _dropout(epochs, cfg.n_params, corpus.train_tokens) if cfg.layers > 1 else 0.0
    )
    steps = max(1, steps)
    chosen_train = {
        "batch": batch,
        "seq": seq,
        "lr": LR_NARROW if cfg.hidden <= LR_WIDTH else LR_WIDE,
        "lr_schedule": LR_SCHEDULE,
        "lr_min_frac": LR_MIN_FRAC,
        "warmup": min(100, max(1, steps // 20)),
        "eval_every": max(1, steps // VALIDATIONS),
        "patience": PATIENCE if corpus.val_tokens else None,
        **stop,
    }
    out_train = {**chosen_train, **{k: v for k, v in train.items() if k in TRAIN_FIELDS}}
    out_model = {**{k: getattr(cfg, k) for k in MODEL_FIELDS}, "dropout": dropout}
    chosen = tuple(k for k in MODEL_FIELDS if k not in model) + tuple(k for k in out_train if k not in train)
    rate = tokens / seconds if seconds else None
    speed = f" at {rate / 1000:.1f}k tokens/s" if rate else ""
    why = (
        f"{describe_stop(stop)}{speed} buys about {tokens / 1e6:.3g}M tokens, {epochs:.3g} epochs of "
        f"{corpus.train_tokens:,}; {cfg.n_params:,} parameters: {limit}"
    )
    return Recipe(out_model, out_train, chosen, tokens, epochs, seconds, rate, why)


def probe_config(corpus: Corpus, model: dict, hidden: int | None = None) -> ModelConfig:
    """The model `probe_speed` times: sized's, at `hidden`, else the user's width up to 512 (the rate per
    multiply-add is flat above ~256), else 256."""
    return sized(corpus, model, hidden or min(model.get("hidden", 256), 512))


def training_speed(K, world, threads: int | None, corpus: Corpus, model: dict, train: dict, on_compile=None):
    """(the Speed of training with all the ranks of `world` together, seconds of the probe's first
    step): every rank probes its share of the batch at once, as they will train; the lead's figure,
    times the ranks, is everyone's. on_compile: called first (a cold cache)."""
    from rnncli.base import memory
    from rnncli.model.model import workspace_bytes

    batch, seq = layout(corpus, train, world.size)
    b0, b1 = world.part(batch)
    probe = probe_config(corpus, model)
    if "hidden" in model:  # a model of the user's width that cannot fit is said first, not its speed
        probe = ModelConfig(**dict(to_dict(probe), hidden=model["hidden"]))
    memory.require(workspace_bytes(K, probe, seq, b1 - b0, True, threads), *memory.TRAINING)
    if on_compile is not None:
        on_compile()
    K.use_threads(threads)
    speed, first = probe_speed(K, corpus, model, b1 - b0, seq)
    # every rank trains its share at once: all the ranks' tokens cost what one rank's share does
    shared = [
        world.share(x) for x in (speed.macs_per_s * world.size, speed.vocab_s / world.size, speed.param_s)
    ]
    return Speed(*shared), first


def probe_speed(K, corpus: Corpus, model: dict, batch: int, seq: int, steps: int = 3) -> tuple[Speed, float]:
    """(the Speed of training in this process, seconds the first step took). Two probe models shaped
    like the candidates, the user's width (or 256) and the narrowest, each run the training step's
    backward (model/step.py) once untimed (it may compile the kernels) then `steps` times, the
    fastest counting (the least disturbed by other work): their difference tells the products' rate
    from the vocabulary's pointwise cost. The wider one's update (clipping and Adam), timed alike,
    gives the cost per parameter. batch: the rows this process trains (its share, under MPI)."""
    import numpy as np

    from rnncli.model.config import TrainConfig
    from rnncli.model.model import Model
    from rnncli.model.params import init_params
    from rnncli.model.step import TrainStep

    rng = np.random.default_rng(0)
    ids = rng.integers(0, corpus.vocab_size, (seq, batch), dtype=np.int64)
    tokens, timed, probes = batch * seq, [], []
    wide = probe_config(corpus, model)
    narrow = probe_config(corpus, model, HIDDEN[0])
    for cfg in (wide, narrow) if narrow != wide else (wide,):
        step = TrainStep(Model(init_params(cfg, rng), K), TrainConfig(), batch)
        probes.append(step)
        seconds = _fastest(K, steps, lambda step=step: step.backward(ids, ids))
        timed.append((cfg.macs_per_token(tokens, training=True) * tokens, *seconds))
    param_s = _fastest(K, steps, lambda: probes[0].update(1e-3))[0] / wide.n_params
    (macs_wide, t_wide, first), (macs_narrow, t_narrow, _) = timed[0], timed[-1]
    if macs_wide <= macs_narrow:  # (a user's width as narrow as the narrowest: the products alone)
        return Speed(macs_wide / t_wide, 0.0, param_s), first
    # the products' share of the wide step, from the difference; at least half of that step (the
    # vocabulary's pointwise work is a small part of a wide model's), so that noise cannot make it vanish
    per_mac = max((t_wide - t_narrow) / (macs_wide - macs_narrow), 0.5 * t_wide / macs_wide)
    vocab_s = max(0.0, t_narrow - per_mac * macs_narrow) / (tokens * corpus.vocab_size)
    return Speed(1 / per_mac, vocab_s, param_s), first


def _fastest(K, steps: int, work) -> tuple[float, float]:
    """(the fastest of `steps` timed calls of work, the seconds of an untimed first one), each
    until the backend has finished it."""
    times = []
    for _ in range(steps + 1):
        t0 = clock()
        work()
        K.synchronize()
        times.append(clock() - t0)
    return min(times[1:]), times[0]
