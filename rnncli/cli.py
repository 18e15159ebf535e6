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

from rnncli.config import ModelConfig, ProbeConfig, SampleConfig, TrainConfig, span
from rnncli.errors import OutputError, RnncliError, Stopped

DEFAULT_MODEL = TrainConfig.out
MODEL_ENV = "RNNCLI_MODEL"

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train, sample, score and inspect recurrent language models (RNN, GRU, LSTM).",
)


def _warn(message: str) -> None:
    print(f"rnncli: warning: {message}", file=sys.stderr)


def _given(**options) -> dict:
    return {k: v for k, v in options.items() if v is not None}


def _model_option():
    return typer.Option(DEFAULT_MODEL, "--model", "-m", envvar=MODEL_ENV, help="checkpoint to use")


def _threads_option():
    return typer.Option(None, min=1, help="CPU threads", show_default="all cores")


def _no_tune_option():
    return typer.Option(False, "--no-tune", help="recurrent products by fixed rules, not this CPU's measured choice")


def _tuning(no_tune: bool) -> None:
    """--no-tune: the rules (RNNCLI_TUNE=0, which the processes the command starts inherit too)."""
    if no_tune:
        os.environ["RNNCLI_TUNE"] = "0"


def _device_option(default: Optional[str] = "auto"):
    return typer.Option(default, help="cpu, cuda, or auto (CUDA when a GPU is there)", show_default="auto")


def _utf8(option: str, *values: str) -> None:
    """Text options hold text: bytes that are not UTF-8 (which Python keeps as lone surrogates) are refused."""
    for value in values:
        try:
            value.encode()
        except UnicodeEncodeError:
            raise RnncliError(f"{option} holds bytes that are not UTF-8 text: {value!r:.60}") from None


M, T = ModelConfig, TrainConfig
CHOSEN = "chosen (auto)"  # what --recipe auto, the default, does with a setting not given


@app.command()
def train(
    corpus: List[str] = typer.Argument(..., help="text files to learn from; - reads standard input"),
    cell: Optional[str] = typer.Option(None, help="rnn, gru or lstm", show_default=f"gru (auto) / {M.cell} (plain)"),
    layers: Optional[int] = typer.Option(None, help="recurrent layers", show_default=f"{M.layers}"),
    hidden: Optional[int] = typer.Option(None, help="hidden units per layer", show_default=f"{CHOSEN} / {M.hidden}"),
    embed: Optional[int] = typer.Option(None, help="embedding size", show_default=f"{M.embed}"),
    dropout: Optional[float] = typer.Option(None, help="dropout between layers", show_default=f"{CHOSEN} / {M.dropout}"),
    batch: Optional[int] = typer.Option(None, help="parallel streams", show_default=f"{CHOSEN} / {T.batch}"),
    seq: Optional[int] = typer.Option(None, help="steps of backpropagation through time", show_default=f"{CHOSEN} / {T.seq}"),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate", show_default=f"{CHOSEN} / {T.lr}"),
    lr_schedule: Optional[str] = typer.Option(None, help="constant, cosine or linear decay", show_default=f"cosine (auto) / {T.lr_schedule}"),
    lr_min_frac: Optional[float] = typer.Option(None, help="where decaying schedules end, as a share of --lr", show_default=f"0.05 (auto) / {T.lr_min_frac}"),
    warmup: Optional[int] = typer.Option(None, help="steps of linear learning-rate warm-up", show_default=f"{CHOSEN} / {T.warmup}"),
    clip: Optional[float] = typer.Option(None, help="global gradient-norm clip, 0 for none", show_default=f"{T.clip}"),
    steps: Optional[int] = typer.Option(None, help="stop after this many steps", show_default="2000 with --recipe plain and no stop given"),
    epochs: Optional[float] = typer.Option(None, help="stop after this many passes over the corpus"),
    time: Optional[float] = typer.Option(None, "--time", help="stop after this many seconds (compiling not counted)", show_default="300 with --recipe auto and no stop given"),
    val_frac: Optional[float] = typer.Option(None, help="share of the text held out", show_default=f"{T.val_frac}"),
    eval_every: Optional[int] = typer.Option(None, help="steps between validations", show_default=f"{CHOSEN} / {T.eval_every}"),
    patience: Optional[int] = typer.Option(None, help="stop after this many validations without a new best", show_default="4 (auto) / never"),
    tokenizer: Optional[str] = typer.Option(None, help="char, byte or word", show_default=f"{T.tokenizer}"),
    max_vocab: Optional[int] = typer.Option(None, help="word tokenizer's vocabulary", show_default=f"{T.max_vocab}"),
    rng_seed: Optional[int] = typer.Option(None, help="seed that makes the run repeatable", show_default=f"{T.rng_seed}"),
    threads: Optional[int] = _threads_option(),
    device: Optional[str] = _device_option(None),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="checkpoint to write", show_default=f"{T.out}, or the --resume file"),
    resume: Optional[str] = typer.Option(None, help="continue the run saved in this checkpoint"),
    allow_new_corpus: bool = typer.Option(False, "--allow-new-corpus", help="with --resume: continue on text other than the run's own"),
    distributed: Optional[bool] = typer.Option(None, "--distributed/--no-distributed", help="one rank of an MPI job (under mpiexec: found by itself)", show_default="when mpiexec started it"),
    recipe: Optional[str] = typer.Option(None, help="auto: settings not given are chosen from the corpus, the budget and this machine's speed; plain: char-rnn's", show_default=f"{T.recipe}"),
    plan: bool = typer.Option(False, "--plan", help="print the recipe and what it should see, then exit"),
    no_tune: bool = _no_tune_option(),
    json_out: bool = typer.Option(False, "--json", help="one JSON object per event on stdout"),
):
    """Train a model on text and write a checkpoint."""
    _tuning(no_tune)
    model = _given(cell=cell, layers=layers, hidden=hidden, embed=embed, dropout=dropout)
    settings = _given(
        batch=batch, seq=seq, lr=lr, lr_schedule=lr_schedule, lr_min_frac=lr_min_frac, warmup=warmup, clip=clip, steps=steps,
        epochs=epochs, time=time, val_frac=val_frac, eval_every=eval_every, patience=patience, tokenizer=tokenizer,
        max_vocab=max_vocab, rng_seed=rng_seed, threads=threads, out=out, device=device, recipe=recipe,
    )
    from rnncli.ui import run_training

    run_training(corpus, model, settings, resume, json_out, allow_new_corpus, distributed, plan)


S = SampleConfig
P = ProbeConfig


@app.command()
def generate(
    model: str = _model_option(),
    seed: str = typer.Option("", "--seed", "-s", help="text to continue"),
    length: int = typer.Option(S.length, "--length", "-n", help="tokens to generate (each sample)"),
    temperature: float = typer.Option(S.temperature, "--temperature", "-t", help="0 is greedy"),
    top_k: int = typer.Option(S.top_k, help="sample among the k likeliest tokens (0: all)"),
    top_p: float = typer.Option(S.top_p, help="sample among the likeliest tokens holding this mass"),
    min_p: float = typer.Option(S.min_p, help="drop tokens less likely than this share of the likeliest"),
    repeat_penalty: float = typer.Option(S.repeat_penalty, help="make tokens seen in the last --repeat-last-n less likely (1: off)"),
    repeat_last_n: int = typer.Option(S.repeat_last_n, help="tokens the repetition penalty looks back over"),
    greedy: bool = typer.Option(False, "--greedy", help="always take the likeliest token"),
    rng_seed: Optional[int] = typer.Option(None, help="seed that makes the output repeatable"),
    echo: bool = typer.Option(True, "--echo/--no-echo", help="print the seed (or prompt) before the continuation"),
    stop: List[str] = typer.Option(None, "--stop", help="end right before this text (repeatable)"),
    max_time: Optional[float] = typer.Option(None, help="stop generating after this many seconds"),
    num_samples: int = typer.Option(S.num_samples, "--num-samples", "-N", help="samples of the seed, decoded together"),
    prompts: Optional[str] = typer.Option(None, "--prompts", help="prompts, one per line, from a file (- reads stdin)"),
    stats: bool = typer.Option(False, "--stats", help="speed figures on stderr at the end"),
    json_out: bool = typer.Option(False, "--json", help="one JSON object per sample"),
    device: str = _device_option(),
):
    """Stream text continuing a seed (or answer prompts) to stdout."""
    _utf8("--seed", seed)
    _utf8("--stop", *(stop or ()))
    cfg = SampleConfig(length, temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, greedy, rng_seed,
                       tuple(stop or ()), max_time, num_samples, device)
    from rnncli.ui import run_generation

    run_generation(model, seed, prompts, cfg, echo, json_out, stats, _warn)


@app.command("eval")
def evaluate(
    text: List[str] = typer.Argument(None, help="text files to score; - or nothing reads standard input"),
    model: str = _model_option(),
    threads: Optional[int] = _threads_option(),
    device: str = _device_option(),
    no_tune: bool = _no_tune_option(),
    json_out: bool = typer.Option(False, "--json", help="print a JSON object"),
):
    """Score text: nats per token, bits per character, perplexity."""
    from rnncli.evaluate import score_text
    from rnncli.model import load_model
    from rnncli.ui import notice_compiling

    _tuning(no_tune)
    if not text and sys.stdin.isatty():
        raise RnncliError("no text to score: name files, or pipe text in (- reads the terminal)")
    loaded = load_model(model, device)
    notice_compiling("sequence_forward")
    score = score_text(text or ["-"], loaded, threads=threads, on_warning=_warn)
    if json_out:
        print(json.dumps(score.to_json()))
    else:
        print(f"nats/token {score.nats_per_token:.4f}  bits/char {score.bits_per_char:.4f}  "
              f"perplexity {score.perplexity:.3f}  tokens {score.tokens}")


@app.command()
def inspect(
    path: Optional[str] = typer.Argument(None, help="checkpoint", show_default=f"${MODEL_ENV} or {DEFAULT_MODEL}"),
    text: List[str] = typer.Option(None, "--text", help="look inside the model reading this text (- for standard input)"),
    neuron: List[str] = typer.Option(None, "--neuron", help="colour by unit LAYER:INDEX (and report it in --json)"),
    state: str = typer.Option(P.state, help="h (hidden) or c (LSTM cell) state of --neuron and --match"),
    top: int = typer.Option(P.top, help="the K likeliest next tokens at each position"),
    find_neurons: bool = typer.Option(False, "--find-neurons", help="rank units by how they track quotes, brackets, line position, ..."),
    match: Optional[str] = typer.Option(None, help="units on across character span START:END, and where else they are on"),
    threshold: float = typer.Option(P.threshold, help="activation at which --match counts a unit as on"),
    html: Optional[str] = typer.Option(None, "--html", help="write a self-contained web page to explore it all"),
    page_mb: float = typer.Option(P.page_mb, help="size limit of the --html page, in MB"),
    threads: Optional[int] = _threads_option(),
    device: str = _device_option(),
    json_out: bool = typer.Option(False, "--json", help="print JSON (with --text: a record per token)"),
):
    """Show what a checkpoint holds; with --text, what the model does reading a text."""
    model_path = path or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    if text:
        cfg = ProbeConfig(tuple(span(n, "--neuron") for n in neuron or ()), state, top, find_neurons,
                          span(match, "--match"), threshold, html, page_mb, device)
        from rnncli.probe_view import run_probe

        run_probe(model_path, text, cfg, threads, json_out, _warn)
        return
    if neuron or top or find_neurons or match or html or (state, threshold, page_mb) != (P.state, P.threshold, P.page_mb):
        raise RnncliError("--neuron, --state, --top, --find-neurons, --match, --threshold, --html and --page-mb "
                          "look at a text: add --text FILE")
    from rnncli.report import describe, render

    info = describe(model_path)
    if json_out:
        print(json.dumps(info))
    else:
        render(info)


@app.command()
def bench(
    config: List[str] = typer.Option(None, "--config", "-c", help="small-lstm, medium-gru, ..., small, medium or all", show_default="all"),
    measure: List[str] = typer.Option(["train", "eval", "generate"], help="train, eval, generate, generate-batch"),
    repeats: int = typer.Option(3, help="timed runs of each measurement; medians are shown"),
    threads: Optional[int] = _threads_option(),
    against_torch: bool = typer.Option(False, "--against-torch", help="run the same work in PyTorch, interleaved"),
    device: str = _device_option(),
    tune: bool = typer.Option(False, "--tune", help="forget this CPU's measured kernel choices and measure them again"),
    no_tune: bool = _no_tune_option(),
    json_out: bool = typer.Option(False, "--json", help="print a JSON object"),
):
    """Measure training, scoring and generation speed (optionally beside PyTorch)."""
    from rnncli.bench import MEASURES, expand
    from rnncli.ui import run_bench

    if tune and no_tune:
        raise RnncliError("--tune and --no-tune: give one or the other")
    if tune:
        from rnncli import tune as tuning

        tuning.forget()
    _tuning(no_tune)

    bad = [m for m in measure if m not in MEASURES]
    if bad or repeats < 1:
        raise RnncliError(f"--measure takes {', '.join(MEASURES)}; --repeats at least 1 (got {bad or repeats})")
    run_bench(expand(config), measure, repeats, threads, against_torch, json_out, device)


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
            raise RnncliError(f"standard output ({e.encoding}) cannot show {e.object[e.start:e.end]!r}; "
                              "set PYTHONIOENCODING=utf-8") from None

    def flush(self):
        try:
            self._stream.flush()
        except OSError as e:
            raise OutputError(e) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _error(message: str) -> None:
    """One line, whatever the message quotes (a file name may hold a newline or other control characters)."""
    one_line = "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode() for ch in message)
    print(f"rnncli: error: {one_line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning every failure into one line on stderr (a closed pipe
    into silence) and its exit status."""
    from typer._click import exceptions as click_exceptions

    from rnncli import paths, tune

    tune.notes = paths.notes = lambda message: print(f"rnncli: {message}", file=sys.stderr, flush=True)
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
    except (Exception, KeyboardInterrupt):  # a bug, or a second Ctrl-C: other ranks must not wait for this one
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
    joined one has loaded rnncli.distributed)."""
    job = getattr(sys.modules.get("rnncli.distributed"), "ACTIVE", None)
    return job if job is not None and job.size > 1 else None
