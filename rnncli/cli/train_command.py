"""`rnncli train`: its flags become ModelSettings, TrainSettings and one RunOptions, then one call
(cli/train_view.py's run_training over api.training.train). The help shows each default from where
it lives: config.py's for --recipe plain, the recipe's for auto."""

from __future__ import annotations

from typing import List, Optional

import typer

from rnncli.cli.options import (
    device_option,
    no_tune_option,
    not_checkpoints,
    note,
    threads_option,
    with_default,
)
from rnncli.model import recipe as R
from rnncli.model.config import ModelConfig, TrainConfig
from rnncli.model.settings import ModelSettings, TrainSettings
from rnncli.run.options import RunOptions

M, T = ModelConfig, TrainConfig
CHOSEN = "chosen (auto)"  # what --recipe auto, the default, does with a setting not given
LR = f"{R.LR_NARROW:g} up to {R.LR_WIDTH} units, else {R.LR_WIDE:g} (auto)"
EMBED = f"{R.EMBED}; auto over a vocabulary of {R.WIDE_VOCAB}+: {R.WIDE_EMBED}, at most --hidden"


def train(
    corpus: List[str] = typer.Argument(..., help="text files to learn from; - reads standard input"),
    cell: Optional[str] = typer.Option(
        None, help=with_default("rnn, gru or lstm", f"{R.CELL} (auto) / {M.cell} (plain)"), show_default=False
    ),
    layers: Optional[int] = typer.Option(
        None, help=with_default("recurrent layers", f"{R.LAYERS} (auto) / {M.layers}"), show_default=False
    ),
    hidden: Optional[int] = typer.Option(
        None, help=with_default("hidden units per layer", f"{CHOSEN} / {M.hidden}"), show_default=False
    ),
    embed: Optional[int] = typer.Option(None, help=with_default("embedding size", EMBED), show_default=False),
    dropout: Optional[float] = typer.Option(
        None, help=with_default("dropout between layers", f"{CHOSEN} / {M.dropout}"), show_default=False
    ),
    batch: Optional[int] = typer.Option(
        None, help=with_default("parallel streams", f"{CHOSEN} / {T.batch}"), show_default=False
    ),
    seq: Optional[int] = typer.Option(
        None,
        help=with_default("steps of backpropagation through time", f"{CHOSEN} / {T.seq}"),
        show_default=False,
    ),
    lr: Optional[float] = typer.Option(
        None, help=with_default("Adam learning rate", f"{LR} / {T.lr}"), show_default=False
    ),
    lr_schedule: Optional[str] = typer.Option(
        None,
        help=with_default("constant, cosine or linear decay", f"{R.LR_SCHEDULE} (auto) / {T.lr_schedule}"),
        show_default=False,
    ),
    lr_min_frac: Optional[float] = typer.Option(
        None,
        help=with_default(
            "where decaying schedules end, as a share of --lr", f"{R.LR_MIN_FRAC:g} (auto) / {T.lr_min_frac}"
        ),
        show_default=False,
    ),
    warmup: Optional[int] = typer.Option(
        None,
        help=with_default("steps of linear learning-rate warm-up", f"{CHOSEN} / {T.warmup}"),
        show_default=False,
    ),
    clip: Optional[float] = typer.Option(
        None, help=with_default("global gradient-norm clip, 0 for none", f"{T.clip}"), show_default=False
    ),
    steps: Optional[int] = typer.Option(
        None,
        help=with_default(
            "stop after this many steps", f"{T().stop_steps} with --recipe plain and no stop given"
        ),
        show_default=False,
    ),
    epochs: Optional[float] = typer.Option(None, help="stop after this many passes over the corpus"),
    time: Optional[float] = typer.Option(
        None,
        "--time",
        help=with_default(
            "stop after this many seconds (compiling not counted)",
            f"{R.DEFAULT_TIME:g} with --recipe auto and no stop given",
        ),
        show_default=False,
    ),
    val_frac: Optional[float] = typer.Option(
        None, help=with_default("share of the text held out", f"{T.val_frac}"), show_default=False
    ),
    eval_every: Optional[int] = typer.Option(
        None, help=with_default("steps between validations", f"{CHOSEN} / {T.eval_every}"), show_default=False
    ),
    patience: Optional[int] = typer.Option(
        None,
        help=with_default(
            "stop after this many validations without a new best", f"{R.PATIENCE} (auto) / never"
        ),
        show_default=False,
    ),
    tokenizer: Optional[str] = typer.Option(
        None, help=with_default("char, byte or word", f"{T.tokenizer}"), show_default=False
    ),
    max_vocab: Optional[int] = typer.Option(
        None, help=with_default("word tokenizer's vocabulary", f"{T.max_vocab}"), show_default=False
    ),
    rng_seed: Optional[int] = typer.Option(
        None, help=with_default("seed that makes the run repeatable", f"{T.rng_seed}"), show_default=False
    ),
    threads: Optional[int] = threads_option(),
    device: Optional[str] = device_option(None),
    out: Optional[str] = typer.Option(
        None,
        "--out",
        "-o",
        help=with_default("checkpoint to write", f"{T.out}, or the --resume file"),
        show_default=False,
    ),
    resume: Optional[str] = typer.Option(None, help="continue the run saved in this checkpoint"),
    allow_new_corpus: bool = typer.Option(
        False, "--allow-new-corpus", help="with --resume: continue on text other than the run's own"
    ),
    more: Optional[str] = typer.Option(
        None, "--more", help="with --resume: train this much more (30s, 10m, 1h, 500steps, 2epochs)"
    ),
    force: bool = typer.Option(False, "--force", help="replace another run's checkpoint at --out"),
    distributed: Optional[bool] = typer.Option(
        None,
        "--distributed/--no-distributed",
        help=with_default(
            "one rank of an MPI job (under mpiexec: found by itself)", "when mpiexec started it"
        ),
        show_default=False,
    ),
    recipe: Optional[str] = typer.Option(
        None,
        help=with_default(
            "auto: settings not given are chosen from the corpus, the budget and this machine's speed; "
            "plain: char-rnn's",
            f"{T.recipe}",
        ),
        show_default=False,
    ),
    plan: bool = typer.Option(False, "--plan", help="print the recipe and what it should see, then exit"),
    no_tune: bool = no_tune_option(),
    json_out: bool = typer.Option(False, "--json", help="one JSON object per event on stdout"),
):
    """Train a model on text and write a checkpoint."""
    not_checkpoints(corpus, "text to learn from", "to continue its run, add --resume with that file")
    options = RunOptions(
        device=device or "auto",
        threads=threads,
        out=out,
        resume=resume,
        more=more,
        force=force,
        allow_new_corpus=allow_new_corpus,
        distributed=distributed,
        tune=not no_tune,
        notes=note,
    )
    model = ModelSettings(cell=cell, layers=layers, hidden=hidden, embed=embed, dropout=dropout)
    settings = TrainSettings(
        batch=batch,
        seq=seq,
        lr=lr,
        lr_schedule=lr_schedule,
        lr_min_frac=lr_min_frac,
        warmup=warmup,
        clip=clip,
        steps=steps,
        epochs=epochs,
        time=time,
        val_frac=val_frac,
        eval_every=eval_every,
        patience=patience,
        tokenizer=tokenizer,
        max_vocab=max_vocab,
        rng_seed=rng_seed,
        recipe=recipe,
    )
    from rnncli.cli.train_view import run_training

    run_training(corpus, model, settings, options, json_out, plan)
