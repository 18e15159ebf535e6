"""A run's claim on its checkpoint path, and what a resumed run is asked to do.

`train` never replaces another run's model unless asked (--force): a checkpoint at --out that is
not the run being resumed is refused in one line that names it and the flags that continue it,
move the new run elsewhere or replace it. `--more` asks a resumed run for more of one stop (time,
steps or epochs) beyond where it is, with its schedule laid over the extension and its patience
counted afresh. No numpy, no numba.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import time
import uuid
from dataclasses import dataclass

from rnncli.base.errors import RnncliError
from rnncli.model.config import require

STOPS = ("time", "steps", "epochs")
UNITS = {
    "s": ("time", 1.0),
    "sec": ("time", 1.0),
    "m": ("time", 60.0),
    "min": ("time", 60.0),
    "h": ("time", 3600.0),
    "step": ("steps", 1.0),
    "steps": ("steps", 1.0),
    "epoch": ("epochs", 1.0),
    "epochs": ("epochs", 1.0),
}


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class More:
    """--more: `amount` more of one stop (`kind`: time in seconds, steps or epochs)."""

    kind: str
    amount: float

    @classmethod
    def parse(cls, text: str) -> "More":
        """'30s', '10m', '1h', '90' (seconds), '500steps', '2 epochs'."""
        raw = text.strip().lower()
        number = raw.rstrip("abcdefghijklmnopqrstuvwxyz ")
        unit = raw[len(number) :].strip() or "s"
        try:
            amount = float(number)
        except ValueError:
            amount = None
        ok = amount is not None and unit in UNITS and 0 < amount < float("inf")
        require(ok, f"--more takes an amount with a unit: 30s, 10m, 1h, 500steps or 2epochs, not {text!r}")
        kind, scale = UNITS[unit]
        require(kind != "steps" or amount == int(amount), f"--more {text}: steps are whole")
        return cls(kind, amount * scale)

    def text(self) -> str:
        return f"{self.amount:g} s" if self.kind == "time" else f"{self.amount:g} {self.kind}"


def describe_saved(contents) -> str:
    """A saved run in a few words: its model, its progress, its best loss and its age."""
    m, p = contents.model, contents.meta.get("progress") or {}
    corpus = contents.meta.get("corpus") or {}
    parts = [f"{m.cell} {m.layers}x{m.hidden} ({contents.tokenizer['kind']})"]
    if isinstance(corpus.get("bytes"), int):
        parts.append(f"trained on {corpus['bytes']:,} bytes of text")
    if p:
        parts.append(f"{p.get('step', 0):,} steps, {p.get('elapsed_s', 0):.0f} s")
    if p.get("best_val_loss") is not None:
        parts.append(f"best validation loss {p['best_val_loss']:.4f}")
    try:
        parts.append(f"saved {_age(time.time() - os.path.getmtime(contents.path))} ago")
    except OSError:
        pass
    return ", ".join(parts)


def _age(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{max(0, seconds):.0f} s"


def resume_command(sources: list[str], path: str, more: str | None = None) -> str:
    """The command that continues the run saved at `path`, as one can paste it."""
    corpus = shlex.join(sources) if sources else "CORPUS"
    tail = f" --more {more}" if more else ""
    return f"rnncli train {corpus} --resume {shlex.quote(path)}{tail}"


def claim(out: str, resume: str | None, force: bool, sources: list[str]) -> str | None:
    """Refuse to write a new run over another run's checkpoint at `out` (unless `force`); the
    resumed run's own file, or another file of the same run, may be written. Returns a note for
    people when `force` replaces a checkpoint, else None."""
    from rnncli.store import validate

    if not os.path.lexists(out) or (resume and _same(out, resume)):
        return None
    try:
        there = validate.read(out)
    except RnncliError:
        there = None
    if there is not None and resume:
        ours = validate.read(resume).meta.get("run_id")
        if ours is not None and ours == there.meta.get("run_id"):
            return None
    if force:
        return f"--force: replacing {out}" + (f" ({describe_saved(there)})" if there else "")
    if there is None:
        raise RnncliError(
            f"{out} exists and is not an rnncli checkpoint; choose another --out (or --force to replace it)"
        )
    raise RnncliError(
        f"{out} holds another run's model ({describe_saved(there)}); continue it with "
        f"`{resume_command(sources, out)}`, write this run elsewhere with --out NEW.safetensors, "
        f"or replace it with --force"
    )


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def extend(run, more: More) -> None:
    """--more: the stop of more's kind moves to where the run is plus the amount (the others go),
    and a decaying schedule runs again over the extension, from the rate the run had reached."""
    lr_now = run.lr_at(0.0)
    start = run.done_in(more.kind, 0.0)
    stop = start + more.amount
    stop = round(stop) if more.kind == "steps" else stop
    run.cfg = dataclasses.replace(run.cfg, **{k: stop if k == more.kind else None for k in STOPS})
    run.extension = {"kind": more.kind, "start": start, "lr": lr_now}


def check_left(run, path: str) -> None:
    """A resumed run with nothing left to do (its stop reached, or stopped early) says so, and how
    to ask for more."""
    cfg = run.cfg
    reached = [k for k in STOPS if getattr(cfg, k) is not None and run.done_in(k, 0.0) >= getattr(cfg, k)]
    if cfg.stop_steps and not reached and run.step >= cfg.stop_steps:
        reached = ["steps"]
    early = bool(cfg.patience and run.best_step is not None and run._since_best() >= cfg.patience)
    if not (reached or early):
        return
    kind = (
        reached[0] if reached else next((k for k in ("time", "steps", "epochs") if getattr(cfg, k)), "steps")
    )
    amount = {
        "time": f"{max(1, round(run.elapsed_before))}s",
        "steps": f"{max(1, run.step)}steps",
        "epochs": f"{max(0.1, round(run.done_in('epochs', 0.0), 1)):g}epochs",
    }[kind]
    why = (
        f"stopped early ({cfg.patience} validations without a new best)"
        if not reached
        else f"has run its {More(kind, getattr(cfg, kind) or cfg.stop_steps).text()}"
    )
    raise RnncliError(
        f"nothing left to do: {path} {why} (step {run.step:,}, {run.elapsed_before:.0f} s of "
        f"training); ask for more with `{resume_command(run.sources, path, amount)}`"
    )
