"""What the commands share: the options every command takes alike, which checkpoint a command reads,
the checks on what is named where, and the lines for people on stderr."""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from rnncli.base.errors import RnncliError
from rnncli.model.config import TrainConfig

DEFAULT_MODEL = TrainConfig.out
MODEL_ENV = "RNNCLI_MODEL"


def warn(message: str) -> None:
    print(f"rnncli: warning: {message}", file=sys.stderr)


def with_default(help: str, shown) -> str:
    """Help text with its default as people write it (typer would wrap a string default in parentheses)."""
    return f"{help}  [default: {shown}]"


def note(message: str) -> None:
    print(f"rnncli: {message}", file=sys.stderr, flush=True)


def model_option():
    return typer.Option(
        None,
        "--model",
        "-m",
        help=with_default("checkpoint to use", f"${MODEL_ENV}, else {DEFAULT_MODEL}"),
        show_default=False,
    )


def model_argument():
    return typer.Argument(
        None, help="checkpoint to use (or -m/--model)", show_default=False, metavar="[MODEL]"
    )


def checkpoint_path(positional: str | None, option: str | None) -> str:
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


def not_checkpoints(paths, what: str, hint: str) -> None:
    """Refuse a checkpoint given where text is expected, naming it."""
    from rnncli.store.checkpoint import looks_like

    for p in paths or ():
        if p != "-" and looks_like(p):
            raise RnncliError(f"{p} is an rnncli checkpoint, not {what}; {hint}")


def threads_option():
    return typer.Option(None, min=1, help=with_default("CPU threads", "all cores"), show_default=False)


def no_tune_option():
    return typer.Option(
        False, "--no-tune", help="recurrent products by fixed rules, not this CPU's measured choice"
    )


def weights_option(default: str = "f32"):
    return typer.Option(
        default,
        "--weights",
        help="the large matrices as f32 (as trained), bf16 or int8 (a scale per row): fewer bytes a "
        "token when generating; eval and inspect score the same rounded weights",
    )


def load_model(
    path: str, device: str, threads: int | None = None, no_tune: bool = False, weights: str = "f32"
):
    """The model a command reads, through the Python API (validated; kernel notes on stderr)."""
    from rnncli.api.model import load

    return load(path, device, weights=weights, threads=threads, tune=not no_tune, notes=note)


def device_option(default: Optional[str] = "auto"):
    return typer.Option(
        default,
        help=with_default("cpu, cuda, or auto (CUDA when a GPU is there)", "auto"),
        show_default=False,
    )


def utf8(option: str, *values: str) -> None:
    """Text options hold text: bytes that are not UTF-8 (which Python keeps as lone surrogates) are
    refused."""
    for value in values:
        try:
            value.encode()
        except UnicodeEncodeError:
            raise RnncliError(f"{option} holds bytes that are not UTF-8 text: {value!r:.60}") from None
