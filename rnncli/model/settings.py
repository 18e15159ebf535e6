"""What a user asks of a new model and its training: every field optional, None meaning "not given"
(the automatic recipe chooses it, or `--recipe plain` takes config.py's default). Typed and
frozen; the CLI builds them from flags and the Python API takes them as they are.

The complete settings a run ends up with are config.py's ModelConfig and TrainConfig, which
checkpoints store; these are the user's side of that choice."""

from __future__ import annotations

from dataclasses import dataclass, fields

from rnncli.model.config import ModelConfig, TrainConfig


def _given(settings) -> dict:
    return {
        f.name: getattr(settings, f.name) for f in fields(settings) if getattr(settings, f.name) is not None
    }


@dataclass(frozen=True)
class ModelSettings:
    """The architecture asked for. Left out (None), a setting is chosen for the corpus, the budget
    and this machine by the automatic recipe.

    >>> ModelSettings(cell="lstm", hidden=128).given()
    {'cell': 'lstm', 'hidden': 128}
    """

    cell: str | None = None  # rnn, gru or lstm
    layers: int | None = None
    hidden: int | None = None  # units per layer
    embed: int | None = None  # embedding width
    dropout: float | None = None  # between layers, training only

    def __post_init__(self):
        ModelConfig(vocab_size=1, **self.given())  # each value checked as a checkpoint's would be

    def given(self) -> dict:
        """The settings given, by name."""
        return _given(self)


@dataclass(frozen=True)
class TrainSettings:
    """How to train, asked for. Left out (None): chosen by the recipe, or config.TrainConfig's
    default where the recipe does not choose it. Stops: `steps`, `epochs`, `time` (seconds of
    training); with none of them, the recipe's 300 s.

    >>> TrainSettings(time=60, rng_seed=1).given()
    {'time': 60, 'rng_seed': 1}
    """

    batch: int | None = None  # streams read side by side
    seq: int | None = None  # tokens of backpropagation through time
    lr: float | None = None
    lr_schedule: str | None = None  # constant, cosine or linear
    lr_min_frac: float | None = None
    warmup: int | None = None
    clip: float | None = None  # global gradient-norm clip; 0 for none
    steps: int | None = None
    epochs: float | None = None
    time: float | None = None
    val_frac: float | None = None  # the share of the text held out for validation
    eval_every: int | None = None
    patience: int | None = None  # validations without a new best before stopping
    tokenizer: str | None = None  # char, byte or word
    max_vocab: int | None = None  # the word tokenizer's vocabulary
    rng_seed: int | None = None
    recipe: str | None = None  # auto (the default) or plain (char-rnn's fixed settings)

    def __post_init__(self):
        TrainConfig(**self.given())

    def given(self) -> dict:
        """The settings given, by name."""
        return _given(self)
