"""A Trainer's setting-up, before its first step: the settings (a checkpoint's, with what may change
on --resume, or the flags', or the automatic recipe's), the corpus read and checked against the run,
the streams and validation split, and the memory the run will need. Trainer.__init__ calls
`prepare` once; it sets the run's attributes (cfg, tokenizer, streams, val, ...) and ends in
Trainer._start, which makes the model and the loop's state."""

from __future__ import annotations

import dataclasses

from rnncli.base import memory
from rnncli.base.errors import RnncliError
from rnncli.data.corpus import load_corpus
from rnncli.data.text import (
    VAL_MAX_TOKENS,
    Streams,
    Tokenizer,
    check_val_split,
    missing_note,
    split_val,
    val_streams,
)
from rnncli.model.config import ModelConfig, TrainConfig
from rnncli.model.model import workspace_bytes
from rnncli.run import runs
from rnncli.store import validate

STOPS = {"steps", "epochs", "time"}  # the stops a run may have (runs.STOPS in order)


def prepare(
    run,
    sources: list[str],
    model: dict,
    train: dict,
    resume: str | None,
    allow_new_corpus: bool,
    plan: bool,
) -> None:
    """Set a Trainer up for its first step (the arguments as Trainer.__init__ checked them, `out` in
    train): its settings, tokenizer, streams, validation split and model (Trainer._start)."""
    run.notes = []  # warnings for people; the caller decides how to show them
    run.compile_s, run.recipe = 0.0, None  # (recipe: this run's choice, as JSON)
    from rnncli.kernels.jit import compiled_on_disk

    run.cold = not compiled_on_disk("sequence_backward", exact=True)  # (before the recipe's probe compiles)
    saved = validate.load(resume, training=True) if resume else None
    if saved:
        contents, _ = saved
        # the device is this machine's choice, not the run's: a run moves between CPU and GPU
        run.cfg = dataclasses.replace(contents.train, **{"device": "auto", **train})
        given, mcfg = Tokenizer.from_json(contents.tokenizer), contents.model
        run.recipe = contents.meta.get("recipe") if isinstance(contents.meta.get("recipe"), dict) else None
        chosen = run.recipe.get("chosen") if run.recipe else None
        # a stop given now replaces those the recipe chose
        if isinstance(chosen, list) and STOPS & set(train):
            run.cfg = dataclasses.replace(run.cfg, **{k: None for k in STOPS - set(train) if k in chosen})
        run.run_id = contents.meta.get("run_id") or runs.new_run_id()
        run.asked_more = run.more is not None or bool(STOPS & set(train))  # (patience then starts afresh)
    else:
        run.cfg = TrainConfig(**train)
        given = mcfg = None
        run.run_id = runs.new_run_id()
    cfg = run.cfg
    if saved or "batch" in train or cfg.recipe != "auto":
        run.world.part(cfg.batch)  # (too few streams for the ranks: said before any reading)
    run.threads = cfg.threads or run.world.threads()  # under mpiexec: each rank its share of the cores
    if run.world.size > 1 and "-" in sources:
        raise RnncliError("under mpiexec the corpus must be a file: standard input reaches rank 0 only")
    if not run.world.lead:
        run.world.barrier()  # the lead makes the token cache first; the others then map it
    corpus = load_corpus(sources, cfg.tokenizer, cfg.max_vocab, given)
    if run.world.lead:
        run.world.barrier()
    run.corpus = corpus.fingerprint
    if corpus.note:
        run.notes.append(corpus.note)
    run.world.agree("the corpus", (corpus.fingerprint["sha256"], len(corpus.ids), len(corpus.tokenizer)))
    run.world.agree(
        "the device", run.K.NAME
    )  # (Adam and the norm differ between CPU and GPU in their last bits)
    if saved:
        _check_corpus(run, contents, allow_new_corpus)
    run.tokenizer = corpus.tokenizer
    ids, missing = corpus.ids, corpus.missing
    if missing:
        run.notes.append(missing_note(run.tokenizer.kind, missing))
    train_ids, val_ids = split_val(ids, cfg.val_frac)
    if mcfg is None and cfg.recipe == "auto":
        model = _choose(run, model, train, len(train_ids), len(val_ids), plan)
        cfg = run.cfg
    if mcfg is None:
        mcfg = ModelConfig(vocab_size=len(run.tokenizer), **model)
    run.streams = Streams(train_ids, cfg.batch, cfg.seq, run.world.part(cfg.batch))
    if run.streams.n_windows < 1:
        raise RnncliError(
            f"the corpus is too short: {len(train_ids)} training tokens cannot fill one window of "
            f"--batch {cfg.batch} x --seq {cfg.seq}; lower them or give more text"
        )
    run.val = None
    if len(val_ids) and run.world.lead:  # the lead rank alone validates
        check_val_split(len(val_ids), cfg.seq)
        run.val = val_streams(val_ids, cfg.batch, cfg.seq)
    memory.require(workspace_bytes(run.K, mcfg, cfg.seq, run.streams.B, True, run.threads), *memory.TRAINING)
    run._start(mcfg, saved)
    if saved:
        runs.check_left(run, resume)


def _choose(run, model: dict, train: dict, n_train: int, n_val: int, plan: bool) -> dict:
    """Settle the automatic recipe (recipe.py): run.cfg gains its settings; returns the model's."""
    from rnncli.model import recipe

    corpus = recipe.Corpus(n_train, min(n_val, VAL_MAX_TOKENS), len(run.tokenizer))
    rate = None
    if plan or "time" in recipe.stop_rule(train):
        check_val_split(n_val, recipe.layout(corpus, train, run.world.size)[1])  # (before spending the probe)
        notice = run.on_compile if run.cold and run.world.lead else None
        rate, first = recipe.training_speed(run.K, run.world, run.threads, corpus, model, train, notice)
        run.compile_s = first if run.cold else 0.0
    chosen = recipe.choose(corpus, model, train, rate, run.world.size)
    run.cfg = TrainConfig(**{**train, **chosen.train})
    run.recipe = chosen.to_json()
    return chosen.model


def _check_corpus(run, contents, allow_new_corpus: bool) -> None:
    """A resumed run reads the text it was trained on, unless asked to move to other text."""
    before = contents.meta.get("corpus")
    if before is None or before["sha256"] == run.corpus["sha256"]:
        return
    if allow_new_corpus:
        run.notes.append("continuing on a corpus other than the one this run started on")
        return
    raise RnncliError(
        f"{contents.path} was trained on other text ({before.get('bytes', '?')} bytes, sha256 "
        f"{before['sha256'][:12]}...; this corpus has {run.corpus['bytes']} bytes, sha256 "
        f"{run.corpus['sha256'][:12]}...); pass --allow-new-corpus to continue on it"
    )
