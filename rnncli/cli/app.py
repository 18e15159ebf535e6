"""The command line: flags become settings, then one library call; data to stdout, people to stderr.

Heavy modules (numpy, numba) are imported inside the commands that need them, so `--help` and
`inspect` stay quick. Every error is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer

from rnncli.base.errors import RnncliError
from rnncli.cli.options import (
    checkpoint_path,
    device_option,
    load_model,
    model_argument,
    model_option,
    no_tune_option,
    not_checkpoints,
    note,
    threads_option,
    utf8,
    warn,
    weights_option,
    with_default,
)
from rnncli.cli.train_command import train
from rnncli.model.config import ProbeConfig, SampleConfig, span
from rnncli.run.options import RunOptions

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: it wraps to the terminal instead of cutting option names
    help="Train, sample, score and inspect recurrent language models (RNN, GRU, LSTM).",
)


def _version(value: bool) -> None:
    if value:
        from rnncli import __version__

        print(f"rnncli {__version__}")
        raise typer.Exit()


app.command()(train)


@app.callback()
def _top(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
):
    """Train, sample, score and inspect recurrent language models (RNN, GRU, LSTM)."""


S = SampleConfig
P = ProbeConfig
GENERATE_WEIGHTS = "f32"  # generate's --weights (eval and inspect score the model as trained unless told)


@app.command()
def generate(
    model_path: Optional[str] = model_argument(),
    model: Optional[str] = model_option(),
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
    device: str = device_option(),
    weights: str = weights_option(GENERATE_WEIGHTS),
):
    """Stream text continuing a seed (or answer prompts) to stdout."""
    utf8("--seed", seed)
    utf8("--stop", *(stop or ()))
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

    not_checkpoints(
        [prompts] if prompts else [], "a file of prompts", f"name the model first or with -m {prompts}"
    )
    path = checkpoint_path(model_path, model)
    run_generation(load_model(path, device, weights=weights), seed, prompts, cfg, echo, json_out, stats, warn)


@app.command("eval")
def evaluate(
    text: List[str] = typer.Argument(
        None,
        help="[MODEL] then text files to score; - or nothing reads standard input",
        metavar="[MODEL] [TEXT]...",
    ),
    model: Optional[str] = model_option(),
    held_out: bool = typer.Option(
        False, "--held-out", help="score the model's own validation split of TEXT (its corpus)"
    ),
    threads: Optional[int] = threads_option(),
    device: str = device_option(),
    no_tune: bool = no_tune_option(),
    weights: str = weights_option(),
    json_out: bool = typer.Option(False, "--json", help="print a JSON object"),
):
    """Score text: nats per token, bits per character, perplexity (a line per file, then the total)."""
    from rnncli.store.checkpoint import looks_like

    text = list(text or [])
    first = text.pop(0) if text and text[0] != "-" and looks_like(text[0]) else None
    not_checkpoints(text, "text to score", "name the model first (rnncli eval MODEL TEXT...) or with -m")
    path = checkpoint_path(first, model)
    if not text and sys.stdin.isatty():
        raise RnncliError("no text to score: name files, or pipe text in (- reads the terminal)")
    if held_out and not text:
        raise RnncliError("--held-out scores the validation split of the model's corpus: name its files")
    from rnncli.cli.ui import run_eval

    run_eval(load_model(path, device, threads, no_tune, weights), text or ["-"], held_out, json_out, warn)


@app.command()
def inspect(
    path: Optional[str] = model_argument(),
    model: Optional[str] = model_option(),
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
    threads: Optional[int] = threads_option(),
    device: str = device_option(),
    weights: str = weights_option(),
    json_out: bool = typer.Option(False, "--json", help="print JSON (with --text: a record per token)"),
):
    """Show what a checkpoint holds; with --text, what the model does reading a text."""
    not_checkpoints(text, "text to read", "name the model first or with -m")
    model_path = checkpoint_path(path, model)
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

        run_probe(model_path, text, cfg, threads, json_out, warn, notes=note, weights=weights)
        return
    if (
        neuron
        or top
        or find_neurons
        or match
        or html
        or (state, threshold, page_mb, weights) != (P.state, P.threshold, P.page_mb, "f32")
    ):
        raise RnncliError(
            "--neuron, --state, --top, --find-neurons, --match, --threshold, --html, --page-mb and "
            "--weights look at a text: add --text FILE"
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
        help=with_default("small-lstm, medium-gru, ..., small, medium or all", "all"),
        show_default=False,
    ),
    measure: List[str] = typer.Option(
        ["train", "eval", "generate"], help="train, eval, generate, generate-batch"
    ),
    repeats: int = typer.Option(3, help="timed runs of each measurement; medians are shown"),
    threads: Optional[int] = threads_option(),
    against_torch: bool = typer.Option(
        False, "--against-torch", help="run the same work in PyTorch, interleaved"
    ),
    device: str = device_option(),
    tune: bool = typer.Option(
        False, "--tune", help="forget this CPU's measured kernel choices and measure them again"
    ),
    no_tune: bool = no_tune_option(),
    weights: str = typer.Option(
        "f32", "--weights", help="the format generation reads its large matrices in: f32, bf16, int8"
    ),
    json_out: bool = typer.Option(False, "--json", help="print a JSON object"),
):
    """Measure training, scoring and generation speed (optionally beside PyTorch)."""
    from rnncli.cli.ui import run_bench
    from rnncli.kernels.formats import check
    from rnncli.run.bench import MEASURES, expand

    check(weights)
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
    options = RunOptions(device=device, threads=threads, tune=not no_tune, notes=note)
    with options.applied():
        run_bench(
            expand(config), measure, repeats, threads, against_torch, json_out, device, options.tune, weights
        )
