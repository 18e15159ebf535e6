"""The command line: flags become settings, then one library call; data to stdout, people to stderr.

Heavy modules (numpy, numba) are imported inside the commands that need them, so `--help` and
`inspect` stay quick. Every error is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from typing import List, Optional

import typer

from rnncli.base.errors import OutputError, RnncliError, Stopped
from rnncli.model import recipe as R
from rnncli.model.config import ModelConfig, ProbeConfig, SampleConfig, TrainConfig, span
from rnncli.model.settings import ModelSettings, TrainSettings
from rnncli.run.options import RunOptions

DEFAULT_MODEL = TrainConfig.out
MODEL_ENV = "RNNCLI_MODEL"

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: it wraps to the terminal instead of cutting option names
    help="Train, sample, score and inspect recurrent language models (RNN, GRU, LSTM).",
)


def _warn(message: str) -> None:
    print(f"rnncli: warning: {message}", file=sys.stderr)


def _d(help: str, shown) -> str:
    """Help text with its default as people write it (typer would wrap a string default in parentheses)."""
    return f"{help}  [default: {shown}]"


def _note(message: str) -> None:
    print(f"rnncli: {message}", file=sys.stderr, flush=True)


def _model_option():
    return typer.Option(
        None,
        "--model",
        "-m",
        help=_d("checkpoint to use", f"${MODEL_ENV}, else {DEFAULT_MODEL}"),
        show_default=False,
    )


def _model_argument():
    return typer.Argument(
        None, help="checkpoint to use (or -m/--model)", show_default=False, metavar="[MODEL]"
    )


def _model(positional: str | None, option: str | None) -> str:
    """The checkpoint a command reads: named first on the command line or with -m, else $RNNCLI_MODEL,
    else rnncli.safetensors in this folder (train's default); a missing one says how to make one."""
    if positional is not None and option is not None and positional != option:
        raise RnncliError(f"two models named: {positional} and -m {option}; give one")
    path = positional or option or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    if path == DEFAULT_MODEL and not os.path.lexists(path):
        raise RnncliError(
            f"no such checkpoint: {path} (train one with `rnncli train TEXT_FILE`, or name one with -m PATH)"
        )
    return path


def _not_checkpoints(paths, what: str, hint: str) -> None:
    """Refuse a checkpoint given where text is expected, naming it."""
    from rnncli.store.checkpoint import looks_like

    for p in paths or ():
        if p != "-" and looks_like(p):
            raise RnncliError(f"{p} is an rnncli checkpoint, not {what}; {hint}")


def _version(value: bool) -> None:
    if value:
        from rnncli import __version__

        print(f"rnncli {__version__}")
        raise typer.Exit()


@app.callback()
def _top(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
):
    """Train, sample, score and inspect recurrent language models (RNN, GRU, LSTM)."""


def _threads_option():
    return typer.Option(None, min=1, help=_d("CPU threads", "all cores"), show_default=False)


def _no_tune_option():
    return typer.Option(
        False, "--no-tune", help="recurrent products by fixed rules, not this CPU's measured choice"
    )


def _load(path: str, device: str, threads: int | None = None, no_tune: bool = False):
    """The model a command reads, through the Python API (validated; kernel notes on stderr)."""
    from rnncli.api.model import load

    return load(path, device, threads=threads, tune=not no_tune, notes=_note)


def _device_option(default: Optional[str] = "auto"):
    return typer.Option(
        default, help=_d("cpu, cuda, or auto (CUDA when a GPU is there)", "auto"), show_default=False
    )


def _utf8(option: str, *values: str) -> None:
    """Text options hold text: bytes that are not UTF-8 (which Python keeps as lone surrogates) are
    refused."""
    for value in values:
        try:
            value.encode()
        except UnicodeEncodeError:
            raise RnncliError(f"{option} holds bytes that are not UTF-8 text: {value!r:.60}") from None


M, T = ModelConfig, TrainConfig
CHOSEN = "chosen (auto)"  # what --recipe auto, the default, does with a setting not given
LR = f"{R.LR_NARROW:g} up to {R.LR_WIDTH} units, else {R.LR_WIDE:g} (auto)"
EMBED = f"{R.EMBED}; auto over a vocabulary of {R.WIDE_VOCAB}+: {R.WIDE_EMBED}, at most --hidden"


@app.command()
def train(
    corpus: List[str] = typer.Argument(..., help="text files to learn from; - reads standard input"),
    cell: Optional[str] = typer.Option(
        None, help=_d("rnn, gru or lstm", f"{R.CELL} (auto) / {M.cell} (plain)"), show_default=False
    ),
    layers: Optional[int] = typer.Option(
        None, help=_d("recurrent layers", f"{R.LAYERS} (auto) / {M.layers}"), show_default=False
    ),
    hidden: Optional[int] = typer.Option(
        None, help=_d("hidden units per layer", f"{CHOSEN} / {M.hidden}"), show_default=False
    ),
    embed: Optional[int] = typer.Option(None, help=_d("embedding size", EMBED), show_default=False),
    dropout: Optional[float] = typer.Option(
        None, help=_d("dropout between layers", f"{CHOSEN} / {M.dropout}"), show_default=False
    ),
    batch: Optional[int] = typer.Option(
        None, help=_d("parallel streams", f"{CHOSEN} / {T.batch}"), show_default=False
    ),
    seq: Optional[int] = typer.Option(
        None, help=_d("steps of backpropagation through time", f"{CHOSEN} / {T.seq}"), show_default=False
    ),
    lr: Optional[float] = typer.Option(
        None, help=_d("Adam learning rate", f"{LR} / {T.lr}"), show_default=False
    ),
    lr_schedule: Optional[str] = typer.Option(
        None,
        help=_d("constant, cosine or linear decay", f"{R.LR_SCHEDULE} (auto) / {T.lr_schedule}"),
        show_default=False,
    ),
    lr_min_frac: Optional[float] = typer.Option(
        None,
        help=_d(
            "where decaying schedules end, as a share of --lr", f"{R.LR_MIN_FRAC:g} (auto) / {T.lr_min_frac}"
        ),
        show_default=False,
    ),
    warmup: Optional[int] = typer.Option(
        None, help=_d("steps of linear learning-rate warm-up", f"{CHOSEN} / {T.warmup}"), show_default=False
    ),
    clip: Optional[float] = typer.Option(
        None, help=_d("global gradient-norm clip, 0 for none", f"{T.clip}"), show_default=False
    ),
    steps: Optional[int] = typer.Option(
        None,
        help=_d("stop after this many steps", f"{T().stop_steps} with --recipe plain and no stop given"),
        show_default=False,
    ),
    epochs: Optional[float] = typer.Option(None, help="stop after this many passes over the corpus"),
    time: Optional[float] = typer.Option(
        None,
        "--time",
        help=_d(
            "stop after this many seconds (compiling not counted)",
            f"{R.DEFAULT_TIME:g} with --recipe auto and no stop given",
        ),
        show_default=False,
    ),
    val_frac: Optional[float] = typer.Option(
        None, help=_d("share of the text held out", f"{T.val_frac}"), show_default=False
    ),
    eval_every: Optional[int] = typer.Option(
        None, help=_d("steps between validations", f"{CHOSEN} / {T.eval_every}"), show_default=False
    ),
    patience: Optional[int] = typer.Option(
        None,
        help=_d("stop after this many validations without a new best", f"{R.PATIENCE} (auto) / never"),
        show_default=False,
    ),
    tokenizer: Optional[str] = typer.Option(
        None, help=_d("char, byte or word", f"{T.tokenizer}"), show_default=False
    ),
    max_vocab: Optional[int] = typer.Option(
        None, help=_d("word tokenizer's vocabulary", f"{T.max_vocab}"), show_default=False
    ),
    rng_seed: Optional[int] = typer.Option(
        None, help=_d("seed that makes the run repeatable", f"{T.rng_seed}"), show_default=False
    ),
    threads: Optional[int] = _threads_option(),
    device: Optional[str] = _device_option(None),
    out: Optional[str] = typer.Option(
        None,
        "--out",
        "-o",
        help=_d("checkpoint to write", f"{T.out}, or the --resume file"),
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
        help=_d("one rank of an MPI job (under mpiexec: found by itself)", "when mpiexec started it"),
        show_default=False,
    ),
    recipe: Optional[str] = typer.Option(
        None,
        help=_d(
            "auto: settings not given are chosen from the corpus, the budget and this machine's speed; "
            "plain: char-rnn's",
            f"{T.recipe}",
        ),
        show_default=False,
    ),
    plan: bool = typer.Option(False, "--plan", help="print the recipe and what it should see, then exit"),
    no_tune: bool = _no_tune_option(),
    json_out: bool = typer.Option(False, "--json", help="one JSON object per event on stdout"),
):
    """Train a model on text and write a checkpoint."""
    _not_checkpoints(corpus, "text to learn from", "to continue its run, add --resume with that file")
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
        notes=_note,
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
    from rnncli.cli.ui import run_training

    run_training(corpus, model, settings, options, json_out, plan)


S = SampleConfig
P = ProbeConfig


@app.command()
def generate(
    model_path: Optional[str] = _model_argument(),
    model: Optional[str] = _model_option(),
    seed: str = typer.Option("", "--seed", "-s", "--prompt", "-p", help="text to continue"),
    length: int = typer.Option(S.length, "--length", "-n", help="tokens to generate (each sample)"),
    temperature: float = typer.Option(S.temperature, "--temperature", "-t", help="0 is greedy"),
    top_k: int = typer.Option(S.top_k, help="sample among the k likeliest tokens (0: all)"),
    top_p: float = typer.Option(S.top_p, help="sample among the likeliest tokens holding this mass"),
    min_p: float = typer.Option(S.min_p, help="drop tokens less likely than this share of the likeliest"),
    repeat_penalty: float = typer.Option(
        S.repeat_penalty, help="make tokens seen in the last --repeat-last-n less likely (1: off)"
    ),
    repeat_last_n: int = typer.Option(S.repeat_last_n, help="tokens the repetition penalty looks back over"),
    greedy: bool = typer.Option(False, "--greedy", help="always take the likeliest token"),
    rng_seed: Optional[int] = typer.Option(None, help="seed that makes the output repeatable"),
    echo: bool = typer.Option(
        True, "--echo/--no-echo", help="print the seed (or prompt) before the continuation"
    ),
    stop: List[str] = typer.Option(None, "--stop", help="end right before this text (repeatable)"),
    max_time: Optional[float] = typer.Option(None, help="stop generating after this many seconds"),
    num_samples: int = typer.Option(
        S.num_samples, "--num-samples", "-N", help="samples of the seed, decoded together"
    ),
    prompts: Optional[str] = typer.Option(
        None, "--prompts", help="prompts, one per line, from a file (- reads stdin)"
    ),
    stats: bool = typer.Option(False, "--stats", help="speed figures on stderr at the end"),
    json_out: bool = typer.Option(False, "--json", help="one JSON object per sample"),
    device: str = _device_option(),
):
    """Stream text continuing a seed (or answer prompts) to stdout."""
    _utf8("--seed", seed)
    _utf8("--stop", *(stop or ()))
    cfg = SampleConfig(
        length,
        temperature,
        top_k,
        top_p,
        min_p,
        repeat_penalty,
        repeat_last_n,
        greedy,
        rng_seed,
        tuple(stop or ()),
        max_time,
        num_samples,
        device,
    )
    from rnncli.cli.ui import run_generation

    _not_checkpoints(
        [prompts] if prompts else [], "a file of prompts", f"name the model first or with -m {prompts}"
    )
    path = _model(model_path, model)
    run_generation(_load(path, device), seed, prompts, cfg, echo, json_out, stats, _warn)


@app.command("eval")
def evaluate(
    text: List[str] = typer.Argument(
        None,
        help="[MODEL] then text files to score; - or nothing reads standard input",
        metavar="[MODEL] [TEXT]...",
    ),
    model: Optional[str] = _model_option(),
    held_out: bool = typer.Option(
        False, "--held-out", help="score the model's own validation split of TEXT (its corpus)"
    ),
    threads: Optional[int] = _threads_option(),
    device: str = _device_option(),
    no_tune: bool = _no_tune_option(),
    json_out: bool = typer.Option(False, "--json", help="print a JSON object"),
):
    """Score text: nats per token, bits per character, perplexity (a line per file, then the total)."""
    from rnncli.store.checkpoint import looks_like

    text = list(text or [])
    first = text.pop(0) if text and text[0] != "-" and looks_like(text[0]) else None
    _not_checkpoints(text, "text to score", "name the model first (rnncli eval MODEL TEXT...) or with -m")
    path = _model(first, model)
    if not text and sys.stdin.isatty():
        raise RnncliError("no text to score: name files, or pipe text in (- reads the terminal)")
    if held_out and not text:
        raise RnncliError("--held-out scores the validation split of the model's corpus: name its files")
    from rnncli.cli.ui import run_eval

    run_eval(_load(path, device, threads, no_tune), text or ["-"], held_out, json_out, _warn)


@app.command()
def inspect(
    path: Optional[str] = _model_argument(),
    model: Optional[str] = _model_option(),
    text: List[str] = typer.Option(
        None, "--text", help="look inside the model reading this text (- for standard input)"
    ),
    neuron: List[str] = typer.Option(
        None, "--neuron", help="colour by unit LAYER:INDEX (and report it in --json)"
    ),
    state: str = typer.Option(P.state, help="h (hidden) or c (LSTM cell) state of --neuron and --match"),
    top: int = typer.Option(P.top, help="the K likeliest next tokens at each position"),
    find_neurons: bool = typer.Option(
        False, "--find-neurons", help="rank units by how they track quotes, brackets, line position, ..."
    ),
    match: Optional[str] = typer.Option(
        None, help="units on across character span START:END, and where else they are on"
    ),
    threshold: float = typer.Option(P.threshold, help="activation at which --match counts a unit as on"),
    html: Optional[str] = typer.Option(
        None, "--html", help="write a self-contained web page to explore it all"
    ),
    page_mb: float = typer.Option(P.page_mb, help="size limit of the --html page, in MB"),
    threads: Optional[int] = _threads_option(),
    device: str = _device_option(),
    json_out: bool = typer.Option(False, "--json", help="print JSON (with --text: a record per token)"),
):
    """Show what a checkpoint holds; with --text, what the model does reading a text."""
    _not_checkpoints(text, "text to read", "name the model first or with -m")
    model_path = _model(path, model)
    if text:
        cfg = ProbeConfig(
            tuple(span(n, "--neuron") for n in neuron or ()),
            state,
            top,
            find_neurons,
            span(match, "--match"),
            threshold,
            html,
            page_mb,
            device,
        )
        from rnncli.cli.probe_view import run_probe

        run_probe(model_path, text, cfg, threads, json_out, _warn, notes=_note)
        return
    if (
        neuron
        or top
        or find_neurons
        or match
        or html
        or (state, threshold, page_mb) != (P.state, P.threshold, P.page_mb)
    ):
        raise RnncliError(
            "--neuron, --state, --top, --find-neurons, --match, --threshold, --html and --page-mb "
            "look at a text: add --text FILE"
        )
    from rnncli.cli.report import describe, render

    info = describe(model_path)
    if json_out:
        print(json.dumps(info))
    else:
        render(info)


@app.command()
def bench(
    config: List[str] = typer.Option(
        None,
        "--config",
        "-c",
        help=_d("small-lstm, medium-gru, ..., small, medium or all", "all"),
        show_default=False,
    ),
    measure: List[str] = typer.Option(
        ["train", "eval", "generate"], help="train, eval, generate, generate-batch"
    ),
    repeats: int = typer.Option(3, help="timed runs of each measurement; medians are shown"),
    threads: Optional[int] = _threads_option(),
    against_torch: bool = typer.Option(
        False, "--against-torch", help="run the same work in PyTorch, interleaved"
    ),
    device: str = _device_option(),
    tune: bool = typer.Option(
        False, "--tune", help="forget this CPU's measured kernel choices and measure them again"
    ),
    no_tune: bool = _no_tune_option(),
    json_out: bool = typer.Option(False, "--json", help="print a JSON object"),
):
    """Measure training, scoring and generation speed (optionally beside PyTorch)."""
    from rnncli.cli.ui import run_bench
    from rnncli.run.bench import MEASURES, expand

    if tune and no_tune:
        raise RnncliError("--tune and --no-tune: give one or the other")
    if tune:
        from rnncli.kernels.cpu import tune as tuning

        tuning.forget()

    bad = [m for m in measure if m not in MEASURES]
    if bad or repeats < 1:
        raise RnncliError(
            f"--measure takes {', '.join(MEASURES)}; --repeats at least 1 (got {bad or repeats})"
        )
    options = RunOptions(device=device, threads=threads, tune=not no_tune, notes=_note)
    with options.applied():
        run_bench(expand(config), measure, repeats, threads, against_torch, json_out, device, options.tune)


class _Stdout:
    """sys.stdout whose write failures (a closed pipe, a full disk) become OutputError, so that
    main can tell them from every other error."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as e:
            raise OutputError(e) from None
        except UnicodeEncodeError as e:
            raise RnncliError(
                f"standard output ({e.encoding}) cannot show {e.object[e.start : e.end]!r}; "
                "set PYTHONIOENCODING=utf-8"
            ) from None

    def flush(self):
        try:
            self._stream.flush()
        except OSError as e:
            raise OutputError(e) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _error(message: str) -> None:
    """One line, whatever the message quotes (a file name may hold a newline or other control characters)."""
    one_line = "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode() for ch in message
    )
    print(f"rnncli: error: {one_line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning every failure into one line on stderr (a closed pipe
    into silence) and its exit status."""
    from typer._click import exceptions as click_exceptions

    stdout = sys.stdout
    sys.stdout = _Stdout(stdout)
    together = False  # an exit every rank of an MPI job takes at the same step (a stop by signal)
    try:
        code = app(args=argv, prog_name="rnncli", standalone_mode=False)
        sys.stdout.flush()
    except RnncliError as e:
        _error(str(e))
        code = 1
    except Stopped as e:
        code, together = 128 + e.signum, True
    except OutputError as e:
        if e.errno != errno.EPIPE:
            _error(f"cannot write the output: {e.strerror}")
        code = 141 if e.errno == errno.EPIPE else 1
        try:  # what is still buffered goes nowhere, so the interpreter's last flush cannot fail
            os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        except (OSError, ValueError):
            pass
    except MemoryError:
        _error("out of memory: the machine could not give what this run needs; try a smaller model or batch")
        code = 1
    except click_exceptions.NoArgsIsHelpError as e:
        print(e.format_message(), file=sys.stderr)
        code = 2
    except click_exceptions.UsageError as e:
        _error(e.format_message())
        code = 2
    except (
        Exception,
        KeyboardInterrupt,
    ):  # a bug, or a second Ctrl-C: other ranks must not wait for this one
        if _mpi_job():
            import traceback

            traceback.print_exc()
            _mpi_job().abort(1)
        raise
    finally:
        sys.stdout = stdout
    if isinstance(code, int) and code and not together and _mpi_job():
        _mpi_job().abort(code)  # the other ranks of an MPI job end too
    sys.exit(code if isinstance(code, int) else 0)


def _mpi_job():
    """This process's MPI job when it is one rank of several, else None (no import: only a run that
    joined one has loaded rnncli.run.distributed)."""
    job = getattr(sys.modules.get("rnncli.run.distributed"), "ACTIVE", None)
    return job if job is not None and job.size > 1 else None
