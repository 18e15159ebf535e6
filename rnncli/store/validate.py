"""What a checkpoint must hold before anything runs on it. A checkpoint may come from anywhere.

Settings of the right types and ranges, a vocabulary that fits the embedding and the head (so no
path can hand a kernel an id outside [0, vocab)), every tensor named, typed and shaped as the
settings say, training state complete or absent, weights finite. `read` needs only the header
(no numpy: `inspect` uses it); `load` also reads and checks the tensors. checkpoint.py has already
checked the file's structure and checksums.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnncli.base.errors import RnncliError
from rnncli.data.text import UNK
from rnncli.model.config import TOKENIZERS, ModelConfig, TrainConfig, check_kind, from_dict
from rnncli.model.config import require as _require
from rnncli.store.checkpoint import TRAINING_PREFIXES, Reader, read_header

PROGRESS = {
    "step": "int",
    "epoch": "int",
    "window": "int",
    "adam_step": "int",
    "tokens_seen": "int",
    "elapsed_s": "float",
    "best_val_loss": "float | None",
    "best_step": "int | None",
}


@dataclass(frozen=True)
class Contents:
    """A checkpoint's header, checked: its settings as configs and what it can be used for."""

    path: str
    table: dict  # tensor name -> {"dtype", "shape", "data_offsets"}
    meta: dict  # decoded metadata
    model: ModelConfig
    train: TrainConfig
    tokenizer: dict  # {"kind": ..., "vocab": [...]} (no vocab for byte)
    resumable: bool  # holds the optimizer, the carried state and the progress


def _tokenizer(tok, vocab_size: int, kind: str) -> None:
    _require(
        isinstance(tok, dict) and tok.get("kind") in TOKENIZERS,
        f"unknown tokenizer {tok.get('kind') if isinstance(tok, dict) else tok!r}",
    )
    _require(tok["kind"] == kind, f"its tokenizer is {tok['kind']} but its settings say {kind}")
    if tok["kind"] == "byte":
        _require(vocab_size == 256, f"a byte tokenizer needs a vocabulary of 256, the model has {vocab_size}")
        return
    vocab = tok.get("vocab")
    _require(
        isinstance(vocab, list) and all(isinstance(t, str) and t for t in vocab),
        "the vocabulary is not a list of non-empty strings",
    )
    _require(
        len(vocab) == vocab_size,
        f"the vocabulary has {len(vocab)} entries, the model's vocab_size is {vocab_size}",
    )
    _require(len(set(vocab)) == len(vocab), "the vocabulary repeats an entry")
    _require(
        not any("\ud800" <= ch <= "\udfff" for t in vocab for ch in t),
        "the vocabulary holds a lone surrogate, which is no character",
    )
    if tok["kind"] == "char":
        _require(
            all(len(t) == 1 for t in vocab), "a character vocabulary holds an entry that is not one character"
        )
        _require(
            all(a < b for a, b in zip(vocab, vocab[1:])),
            "the character vocabulary is not in code-point order",
        )
    else:
        _require(vocab[0] == UNK, f"a word vocabulary must start with {UNK}")


def _tensors(table: dict, model: ModelConfig, train: TrainConfig) -> bool:
    """Check every tensor against the settings; whether the training state is there."""
    _require(
        4 * model.layers + 3 <= len(table),
        f"it holds {len(table)} tensors, too few for {model.layers} layers",
    )
    expected = {name: list(shape) for name, shape in model.tensor_shapes()}
    state = [model.layers, train.batch, model.hidden]
    groups = {
        "": expected,
        "optimizer.exp_avg.": expected,
        "optimizer.exp_avg_sq.": expected,
        "resume.": expected,
        "state.": {"h": state, "c": state},
    }
    found = {prefix: set() for prefix in groups}
    for name, entry in table.items():
        prefix = next((p for p in groups if p and name.startswith(p)), "")
        shape = groups[prefix].get(name[len(prefix) :])
        _require(shape is not None, f"it holds a tensor rnncli does not use: {name!r}")
        _require(entry["dtype"] == "F32", f"tensor {name} is {entry['dtype']}, not F32")
        _require(
            entry["shape"] == shape, f"tensor {name} has shape {entry['shape']}, the settings say {shape}"
        )
        found[prefix].add(name[len(prefix) :])
    complete = {p: len(found[p]) == len(groups[p]) for p in groups}
    for prefix in groups:
        missing = sorted(set(groups[prefix]) - found[prefix])
        if missing and (found[prefix] or prefix == ""):  # a group is all there or (training state) absent
            raise RnncliError(f"tensor {prefix}{missing[0]} is missing")
    training = [p for p in groups if p not in ("", "resume.")]
    _require(len({complete[p] for p in training}) == 1, "its training state is incomplete")
    return complete["state."]


def _progress(meta: dict, resumable: bool) -> None:
    """Progress, loss history and random state, as `--resume` and `inspect` read them."""
    prog = meta.get("progress")
    _require(isinstance(prog, dict), "its progress record is missing")
    for key, kind in PROGRESS.items():
        check_kind(f"progress.{key}", prog.get(key), kind)
        _require(prog[key] is None or prog[key] >= 0, f"progress.{key} is negative")
    check_kind("progress.patience_from", prog.get("patience_from", 0), "int")
    ext = prog.get("extension")
    if ext is not None:  # --more's stretch of schedule
        _require(
            isinstance(ext, dict) and ext.get("kind") in ("time", "steps", "epochs"),
            "progress.extension is malformed",
        )
        for key in ("start", "lr"):
            check_kind(f"progress.extension.{key}", ext.get(key), "float")
        _require(ext["start"] >= 0 and ext["lr"] > 0, "progress.extension is out of range")
    since = prog.get("since_eval", [])
    _require(isinstance(since, list), "progress.since_eval is not a list")
    for x in since:
        check_kind("progress.since_eval", x, "float")
    history = meta.get("history")
    _require(isinstance(history, list), "its loss history is missing")
    for row in history:
        _require(isinstance(row, list) and len(row) == 3, f"a loss history row is {row!r}")
        for value, kind in zip(row, ("int", "float", "float | None")):
            check_kind("history", value, kind)
    curve = meta.get("curve")  # (files before format 2's curve have none)
    if curve is not None:
        _require(
            isinstance(curve, dict)
            and isinstance(curve.get("points"), list)
            and isinstance(curve.get("pending"), list)
            and len(curve["pending"]) == 3,
            "its loss curve is malformed",
        )
        check_kind("curve.stride", curve.get("stride"), "int")
        _require(curve["stride"] >= 1, "curve.stride is below 1")
        for row in curve["points"]:
            _require(isinstance(row, list) and len(row) == 2, f"a loss curve point is {row!r}")
            check_kind("curve", row[0], "int")
            check_kind("curve", row[1], "float")
        for value, kind in zip(curve["pending"], ("float", "int", "int")):
            check_kind("curve.pending", value, kind)
    rng = meta.get("rng")
    _require(
        not resumable or (isinstance(rng, dict) and rng.get("bit_generator") == "PCG64"),
        "its random generator state is missing",
    )
    check_kind("run_id", meta.get("run_id", ""), "str")
    corpus = meta.get("corpus")
    _require(
        corpus is None or (isinstance(corpus, dict) and isinstance(corpus.get("sha256"), str)),
        "its corpus fingerprint is malformed",
    )


def _checked(path, table: dict, meta: dict) -> Contents:
    """The header's contents as configs, or one clear RnncliError naming the file."""
    try:
        try:
            model = from_dict(ModelConfig, meta.get("model"))
            train = from_dict(TrainConfig, meta.get("train"))
        except RnncliError as e:
            raise RnncliError(f"bad settings: {e}") from None
        _tokenizer(meta.get("tokenizer"), model.vocab_size, train.tokenizer)
        recipe = meta.get("recipe")  # (the automatic recipe's record: carried by --resume, shown by inspect)
        _require(
            recipe is None or (isinstance(recipe, dict) and isinstance(recipe.get("why"), str)),
            "its recipe record is malformed",
        )
        resumable = _tensors(table, model, train)
        if resumable or "progress" in meta or "history" in meta:
            _progress(meta, resumable)
    except RnncliError as e:
        raise RnncliError(f"{path} is not a valid rnncli checkpoint: {e}") from None
    return Contents(str(path), table, meta, model, train, meta["tokenizer"], resumable)


def read(path: str) -> Contents:
    """The checked header of a checkpoint (no tensors read, no numpy)."""
    return _checked(path, *read_header(path))


def load(path: str, training: bool = False) -> tuple[Contents, dict]:
    """(checked header, tensors): the model's tensors, and with `training` the optimizer's and the
    carried state too; every tensor read is checked to be finite (and Adam's second moments >= 0)."""
    import numpy as np

    with Reader(path) as reader:
        contents = _checked(path, reader.table, reader.meta)
        if training and not contents.resumable:
            raise RnncliError(f"{path} holds weights only (no optimizer state): it cannot be resumed")
        if training:
            try:  # numpy checks the random generator's state as it takes it; try it on a spare one
                np.random.PCG64().state = contents.meta["rng"]
            except Exception:  # noqa: BLE001 (whatever numpy makes of foreign data)
                raise RnncliError(
                    f"{path} is not a valid rnncli checkpoint: its random generator state is damaged"
                ) from None
        tensors = reader.tensors(
            [n for n in contents.table if training or not n.startswith(TRAINING_PREFIXES)]
        )
    for name, arr in tensors.items():
        bad = "NaN or infinite values" if not np.isfinite(arr).all() else None
        if name.startswith("optimizer.exp_avg_sq.") and (arr < 0).any():
            bad = "negative second moments"
        if bad:
            raise RnncliError(f"{path} is not a valid rnncli checkpoint: tensor {name} holds {bad}")
    return contents, tensors
