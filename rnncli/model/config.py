"""Frozen settings for the model, a training run and sampling: the one home of every default.

The CLI takes its option defaults from here and checkpoints store these as JSON. No numpy, no numba.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

from rnncli.base.errors import RnncliError
from rnncli.kernels import table
from rnncli.kernels.device import check_device

CELLS = table.NAMES  # the kernels know a cell by its index in this tuple
GATES = dict(zip(table.NAMES, table.GATES))  # blocks of `hidden` rows in weight_ih / weight_hh
TOKENIZERS = ("char", "byte", "word")
SCHEDULES = ("constant", "cosine", "linear")
RECIPES = ("auto", "plain")  # auto: chosen from the corpus, budget and speed (recipe.py); plain: char-rnn's


def require(ok: bool, message: str) -> None:
    """Raise RnncliError(message) unless ok."""
    if not ok:
        raise RnncliError(message)


def _finite(x) -> bool:
    return x is None or math.isfinite(x)


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
        require(self.cell in CELLS, f"unknown cell {self.cell!r}: choose one of {', '.join(CELLS)}")
        require(self.vocab_size >= 1, "the vocabulary is empty")
        for name in ("layers", "hidden", "embed"):
            require(getattr(self, name) >= 1, f"--{name} must be at least 1, not {getattr(self, name)}")
        require(0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1), not {self.dropout}")

    @property
    def gates(self) -> int:
        return GATES[self.cell]

    @property
    def cell_code(self) -> int:
        return CELLS.index(self.cell)

    @property
    def gate_width(self) -> int:
        """G: the rows of weight_ih / weight_hh, the width of a step's pre-activations."""
        return self.gates * self.hidden

    @property
    def act_width(self) -> int:
        """A: what a step keeps for backward per row (kernels/table.py): gru r, z, n, hn; lstm i, f,
        g, o; the rnn nothing (its h is enough)."""
        return table.ACTS[self.cell_code] * self.hidden

    @property
    def cstate_width(self) -> int:
        """C: the width of the cell state c (the lstm's alone; 0 for the others)."""
        return table.CSTATE[self.cell_code] * self.hidden

    @property
    def apart(self) -> bool:
        """Whether a step's recurrent-side gradient is an array apart from its input side's (the gru's)."""
        return bool(table.APART[self.cell_code])

    def tensor_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """Every parameter's PyTorch name and shape, in the order they sit in the flat buffer."""
        G, H = self.gates * self.hidden, self.hidden
        shapes = [("embedding.weight", (self.vocab_size, self.embed))]
        for k in range(self.layers):
            shapes += [
                (f"rnn.weight_ih_l{k}", (G, self.embed if k == 0 else H)),
                (f"rnn.weight_hh_l{k}", (G, H)),
                (f"rnn.bias_ih_l{k}", (G,)),
                (f"rnn.bias_hh_l{k}", (G,)),
            ]
        return shapes + [("head.weight", (self.vocab_size, H)), ("head.bias", (self.vocab_size,))]

    @property
    def n_params(self) -> int:
        """The sum over tensor_shapes, in closed form (no list of a million layers to build)."""
        G, H, V = self.gates * self.hidden, self.hidden, self.vocab_size
        return V * self.embed + G * (self.embed + H + 2) + (self.layers - 1) * G * (2 * H + 2) + V * (H + 1)

    def macs_per_token(self, window: float | None = math.inf, training: bool = False) -> float:
        """Multiply-adds of one token through the products: the one cost model, which bench's GFLOP/s
        and the recipe's speed both count with. A forward pass: each layer's recurrent product
        (G x H), the input products of the layers above the first (G x H), the head (V x H), and
        layer 0's input product as `window` says. None: the model's nominal work, G x E a token (as
        PyTorch runs it). A number: as rnncli runs it, a (V, G) table, V x E x G, made once for
        `window` tokens (a training or scoring window; math.inf: generation, once a model) and a
        row copied a token; a window of fewer than V tokens takes the product itself. training:
        forward and backward, 3x the forward (each product has two gradient products, the table's too)."""
        G, H, V, E = self.gates * self.hidden, self.hidden, self.vocab_size, self.embed
        layer0 = G * E if window is None or window < V else V * E * G / window
        forward = G * H + (self.layers - 1) * G * 2 * H + V * H + layer0
        return 3 * forward if training else forward


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
    patience: int | None = None  # stop after this many validations without a new best (None: never)
    tokenizer: str = "char"
    max_vocab: int = 20000
    rng_seed: int = 0
    threads: int | None = None
    out: str = "rnncli.safetensors"
    device: str = "auto"
    recipe: str = "auto"  # what the settings not given come from: RECIPES

    def __post_init__(self):
        for name in ("batch", "seq", "eval_every", "max_vocab"):
            require(
                getattr(self, name) >= 1,
                f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}",
            )
        require(self.rng_seed >= 0, f"--rng-seed must be a whole number >= 0, not {self.rng_seed}")
        require(
            0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0 and self.eps > 0,
            "Adam's betas must be in [0, 1) and eps > 0",
        )
        require(self.lr > 0 and math.isfinite(self.lr), f"--lr must be a positive number, not {self.lr}")
        require(self.clip >= 0, f"--clip must be >= 0 (0 turns clipping off), not {self.clip}")
        require(0.0 <= self.val_frac < 1.0, f"--val-frac must be in [0, 1), not {self.val_frac}")
        require(
            self.lr_schedule in SCHEDULES,
            f"unknown --lr-schedule {self.lr_schedule!r}: choose one of {', '.join(SCHEDULES)}",
        )
        require(0.0 <= self.lr_min_frac <= 1.0, f"--lr-min-frac must be in [0, 1], not {self.lr_min_frac}")
        require(self.warmup >= 0, f"--warmup must be >= 0, not {self.warmup}")
        require(
            self.tokenizer in TOKENIZERS,
            f"unknown --tokenizer {self.tokenizer!r}: choose one of {', '.join(TOKENIZERS)}",
        )
        require(self.steps is None or self.steps >= 1, f"--steps must be at least 1, not {self.steps}")
        require(
            self.epochs is None or (self.epochs > 0 and _finite(self.epochs)),
            f"--epochs must be positive, not {self.epochs}",
        )
        require(
            self.time is None or (self.time > 0 and _finite(self.time)),
            f"--time must be a positive number of seconds, not {self.time}",
        )
        require(
            self.threads is None or self.threads >= 1, f"--threads must be at least 1, not {self.threads}"
        )
        require(
            self.patience is None or self.patience >= 1, f"--patience must be at least 1, not {self.patience}"
        )
        require(
            self.patience is None or self.val_frac > 0,
            "--patience watches the validation loss: it needs --val-frac > 0",
        )
        require(
            self.recipe in RECIPES, f"unknown --recipe {self.recipe!r}: choose one of {', '.join(RECIPES)}"
        )
        check_device(self.device)

    @property
    def stop_steps(self) -> int | None:
        """Steps asked for, or None; with no stop given at all, 2000 steps."""
        if self.steps is None and self.epochs is None and self.time is None:
            return 2000
        return self.steps


@dataclass(frozen=True)
class SampleConfig:
    """How to draw text from a model: the sampler chain (llama.cpp's order: repetition penalty,
    top-k, top-p, min-p, temperature), when to stop, and how many samples."""

    length: int = 500
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    greedy: bool = False
    rng_seed: int | None = None
    stop: tuple = ()
    max_time: float | None = None
    num_samples: int = 1
    device: str = "auto"

    def __post_init__(self):
        require(self.length >= 0, f"--length must be >= 0, not {self.length}")
        require(
            self.rng_seed is None or self.rng_seed >= 0,
            f"--rng-seed must be a whole number >= 0, not {self.rng_seed}",
        )
        require(
            self.temperature >= 0 and math.isfinite(self.temperature),
            f"--temperature must be a number >= 0, not {self.temperature}",
        )
        require(self.top_k >= 0, f"--top-k must be >= 0 (0 keeps every token), not {self.top_k}")
        require(0.0 < self.top_p <= 1.0, f"--top-p must be in (0, 1], not {self.top_p}")
        require(0.0 <= self.min_p <= 1.0, f"--min-p must be in [0, 1], not {self.min_p}")
        require(
            self.repeat_penalty > 0 and math.isfinite(self.repeat_penalty),
            f"--repeat-penalty must be a positive number (1 is off), not {self.repeat_penalty}",
        )
        require(
            0 <= self.repeat_last_n <= 1 << 16,
            f"--repeat-last-n must be in [0, 65536], not {self.repeat_last_n}",
        )
        require(all(self.stop), "--stop takes a non-empty string")
        require(
            self.max_time is None or (self.max_time > 0 and math.isfinite(self.max_time)),
            f"--max-time must be a positive number of seconds, not {self.max_time}",
        )
        require(self.num_samples >= 1, f"--num-samples must be at least 1, not {self.num_samples}")
        check_device(self.device)

    @property
    def effective_temperature(self) -> float:
        return 0.0 if self.greedy else self.temperature


STATES = ("h", "c")  # a unit's hidden state, or (LSTM) its cell state


def span(text: str | None, flag: str, sep: str = ":") -> tuple[int, int] | None:
    """Two whole numbers >= 0 written A<sep>B (--neuron 1:17, --match 120:140), or None for None."""
    if text is None:
        return None
    a, _, b = text.partition(sep)
    ok = all(x.strip().isascii() and x.strip().isdecimal() for x in (a, b))
    require(ok, f"{flag} takes two whole numbers as A{sep}B, not {text!r}")
    return int(a), int(b)


@dataclass(frozen=True)
class ProbeConfig:
    """What `inspect --text` shows of a model reading a text: units (layer, index) to colour by and
    report, top next tokens, neuron finding, LSTMVis's span match, a web page."""

    neurons: tuple = ()  # ((layer, unit), ...)
    state: str = "h"
    top: int = 0
    find_neurons: bool = False
    match: tuple | None = None  # (start, end) character offsets
    threshold: float = 0.3
    html: str | None = None
    page_mb: float = 20.0
    device: str = "auto"

    def __post_init__(self):
        require(self.state in STATES, f"--state takes h (hidden) or c (LSTM cell), not {self.state!r}")
        require(0 <= self.top <= 100, f"--top must be in [0, 100], not {self.top}")
        require(
            self.match is None or self.match[0] < self.match[1],
            f"--match START:END needs START < END, not {self.match}",
        )
        require(math.isfinite(self.threshold), f"--threshold must be a finite number, not {self.threshold}")
        require(
            self.page_mb > 0 and math.isfinite(self.page_mb),
            f"--page-mb must be a positive number, not {self.page_mb}",
        )
        check_device(self.device)

    def check_model(self, cfg: ModelConfig) -> None:
        """Refuse units and states this model does not have, naming what it has."""
        require(
            self.state == "h" or cfg.cell == "lstm",
            f"--state c: only an LSTM has cell states; this model is a {cfg.cell}",
        )
        for layer, unit in self.neurons:
            require(
                layer < cfg.layers and unit < cfg.hidden,
                f"--neuron {layer}:{unit}: this model has layers 0..{cfg.layers - 1} "
                f"of units 0..{cfg.hidden - 1}",
            )


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


_KINDS = {
    "int": (
        "a whole number below 2**53",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**53,
    ),
    "float": (
        "a finite number",
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    ),
    "str": ("a string", lambda v: isinstance(v, str)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
}


def check_kind(name: str, value, kind: str) -> None:
    """Raise unless a stored value is of `kind`: int, float, str or bool, with " | None" allowed."""
    base, _, optional = kind.partition(" | ")
    what, ok = _KINDS[base]
    require(
        (value is None and optional == "None") or ok(value), f"the setting {name} is {value!r}, not {what}"
    )


BEFORE = {"recipe": "plain"}  # settings whose default changed when they were added


def from_dict(cls, data):
    """Rebuild a config from stored JSON, ignoring keys a newer or older version added; every value
    is checked against its field's type (a checkpoint may come from anywhere) and then its range."""
    require(isinstance(data, dict), "its settings are not a JSON object")
    values = {}
    for f in fields(cls):
        if f.name not in data:
            require(f.default is not dataclasses.MISSING, f"the setting {f.name} is missing")
            if f.name in BEFORE:  # a file from before the setting existed: what it meant then
                values[f.name] = BEFORE[f.name]
            continue
        v = data[f.name]
        check_kind(f.name, v, f.type)
        values[f.name] = float(v) if f.type.startswith("float") and v is not None else v
    return cls(**values)
