"""What people see while training: a rich progress bar on stderr, or JSON lines on stdout."""
from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _fmt(value, spec=".4f") -> str:
    return "-" if value is None else format(value, spec)


def _line(ev: dict) -> str:
    rate = ev.get("tokens_per_s")
    parts = [f"step {ev['step']}", f"train {ev['train_loss']:.4f}"]
    if "val_loss" in ev:
        parts.append(f"val {_fmt(ev['val_loss'])}")
    parts.append(f"{rate / 1000:.1f}k tok/s" if rate else "")
    return "  ".join(p for p in parts if p)


def run_training(corpus: list[str], model: dict, settings: dict, resume: str | None, json_out: bool) -> None:
    """Build the run, show its events, and save it if interrupted."""
    from rnncli.kernels.jit import compiled_on_disk
    from rnncli.train import Trainer

    console = Console(stderr=True)
    trainer = Trainer(corpus, model, settings, resume)
    if not compiled_on_disk():
        console.print("rnncli: compiling kernels (first run only, about 20 s)...")
    try:
        if json_out:
            for ev in trainer.run():
                print(json.dumps(ev), flush=True)
        else:
            _show(trainer, console)
    except KeyboardInterrupt:
        path = trainer.save()
        console.print(f"rnncli: stopped at step {trainer.step}; saved {path} (continue with --resume {path})")
        raise


def _show(trainer, console: Console) -> None:
    cfg = trainer.cfg
    m = trainer.model.cfg
    from rnncli.params import count_params

    console.print(
        f"rnncli: {m.cell} {m.layers}x{m.hidden}, {count_params(m):,} parameters, vocabulary {m.vocab_size} "
        f"({cfg.tokenizer}); {trainer.streams.n_windows} windows of {cfg.batch}x{cfg.seq} per epoch"
    )
    live = console.is_terminal
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=not live, transient=False) as bar:
        task = bar.add_task("train", total=1.0, info="")
        val = None
        for ev in trainer.run():
            if ev["event"] == "done":
                best = ev["best_val_loss"]
                console.print(
                    f"rnncli: saved {ev['checkpoint']} after {ev['step']} steps in {ev['elapsed_s']:.0f} s"
                    + (f" (best validation loss {best:.4f} nats)" if best is not None else "")
                )
                break
            val = ev.get("val_loss", val)
            rate = ev["tokens_per_s"]
            info = f"step {ev['step']}  loss {ev['train_loss']:.3f}  val {_fmt(val, '.3f')}  " + (
                f"{rate / 1000:.1f}k tok/s" if rate else ""
            )
            bar.update(task, completed=ev["progress"], info=info)
            if "val_loss" in ev or (not live and "best_val_loss" not in ev and ev["step"] % trainer.cfg.eval_every == 0):
                (bar.console if live else console).print(_line(ev))
    sys.stderr.flush()
