"""What people see of a training run: the recipe chosen, the plan, a progress bar on stderr (or JSON
lines on stdout), the stop by signal and the line that says how to go on."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from rnncli.cli.ui import notice_compiling, say_compiling


def _fmt(value, spec=".4f") -> str:
    return "-" if value is None else format(value, spec)


def _line(ev: dict) -> str:
    rate = ev.get("tokens_per_s")
    parts = [f"step {ev['step']}", f"train {ev['train_loss']:.4f}"]
    if "val_loss" in ev:
        parts.append(f"val {_fmt(ev['val_loss'])}")
    parts.append(f"{rate / 1000:.1f}k tok/s" if rate else "")
    return "  ".join(p for p in parts if p)


STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def recipe_lines(recipe: dict) -> list[str]:
    """The automatic recipe for people: what was chosen, and one line of why."""
    from rnncli.model.recipe import describe_stop

    m, t = recipe["model"], recipe["train"]
    stop = describe_stop({k: t.get(k) for k in ("time", "steps", "epochs")})
    yours = [k for k in (*m, *t) if k not in recipe["chosen"]]
    return [
        f"recipe (auto): {m['cell']} {m['layers']}x{m['hidden']}, embedding {m['embed']}, "
        f"dropout {m['dropout']:g}; "
        f"batch {t['batch']}x{t['seq']}, lr {t['lr']:g} ({t['lr_schedule']} to {t['lr_min_frac']:g}x, "
        f"{t['warmup']} warm-up steps), validation every {t['eval_every']} steps, "
        f"patience {t['patience'] or 'off'}; {stop}" + (f" (yours: {', '.join(yours)})" if yours else ""),
        f"why: {recipe['why']}",
    ]


def show_plan(run, json_out: bool) -> None:
    """`train --plan`: the recipe and what the run should see, on stdout."""
    plan = run.plan()
    if json_out:
        print(json.dumps(plan), flush=True)
        return
    if run.recipe is None:  # --recipe plain
        print(f"recipe (plain): {json.dumps(plan['model'])} {json.dumps(plan['train'])}")
        return
    recipe, cfg = run.recipe, run.train_config
    for line in recipe_lines(recipe):
        print(line)
    seconds = f", about {recipe['seconds']:.0f} s of training" if recipe["seconds"] else ""
    print(
        f"predicted: {recipe['tokens'] / (cfg.batch * cfg.seq):,.0f} steps, "
        f"{recipe['tokens'] / 1e6:.3g}M tokens, "
        f"{recipe['epochs']:.3g} epochs{seconds}; {plan['parameters']:,} parameters"
    )


def show_resume_plan(run, json_out: bool) -> None:
    """`train --resume X --plan`: where the run is, where it will stop, and its learning rate on the way."""
    plan, cfg = run.plan(), run.train_config
    if json_out:
        print(json.dumps(plan), flush=True)
        return
    stop, rate = plan["stop"], plan["tokens_per_s"]
    ends = ", ".join(f"{v:.0f} s" if k == "time" else f"{v:g} {k}" for k, v in stop.items())
    print(
        f"resume: step {plan['step']:,}, {plan['elapsed_s']:.0f} s of training so far; "
        f"stops at {ends} (whole run)"
    )
    left = "-" if plan["steps_left"] is None else f"{plan['steps_left']:,}"
    secs = (
        f", about {plan['seconds_left']:.0f} s at {rate / 1000:.1f}k tokens/s"
        if plan["seconds_left"] is not None
        else ""
    )
    print(
        f"predicted: {left} more steps{secs}; learning rate {plan['lr_now']:.3g} -> {plan['lr_end']:.3g} "
        f"({cfg.lr_schedule}); patience {cfg.patience or 'off'}"
        + (" (counted from this session)" if cfg.patience and plan["patience_from"] == plan["step"] else "")
    )


def run_training(corpus: list[str], model, train, options, json_out: bool, plan: bool = False) -> None:
    """Set the run up (api.training.train: ModelSettings, TrainSettings, RunOptions) and show its
    events. SIGINT (Ctrl-C), SIGTERM and SIGHUP stop it at the end of the step under way, save it
    and exit 128 + the signal (a second one stops at once, without saving); a signal the run was
    started with ignored (nohup, a background job) stays ignored.
    Standard output failing (`--json | head`, a full disk) saves too, then ends as main says for
    output errors. In an MPI job every rank trains; the lead (rank 0) alone shows anything, and a
    signal to any rank stops all of them after the same step."""
    import errno
    import signal

    from rnncli.api.training import train as start
    from rnncli.base.errors import OutputError, RnncliError, Stopped

    console = Console(stderr=True, soft_wrap=True)
    asked = []

    def on_signal(signum, frame):
        asked.append(signum)
        trainer.stop_asked = True
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)

    def save_and_say(why: str) -> str:
        from rnncli.run.runs import resume_command

        path = trainer.save()
        return (
            f"stopped {why} at step {trainer.step}; saved {path} "
            f"(continue with `{resume_command(corpus, path)}`)"
        )

    said = []  # (the automatic recipe's speed probe may be what compiles: it says so then)
    with start(
        corpus, model, train, options, plan=plan, on_compile=lambda: said.append(say_compiling())
    ) as run:
        trainer = run.trainer
        lead = trainer.world.lead
        for note in trainer.notes if lead else ():
            console.print(f"rnncli: warning: {note}", markup=False)
        if trainer.replacing and lead:
            console.print(f"rnncli: {trainer.replacing}", markup=False)
        if plan:
            if lead:
                (show_resume_plan if options.resume else show_plan)(run, json_out)
            return
        if lead and not said:
            notice_compiling("sequence_backward")
        # JSON lines that go out with the first step's (so that an output failure finds a step to save)
        head = []
        if lead and trainer.recipe is not None and not options.resume:
            if json_out:
                head.append({"event": "recipe", **trainer.recipe})
            else:
                for line in recipe_lines(trainer.recipe):
                    console.print(f"rnncli: {line}", markup=False)
        signals = [
            sig
            for sig in (getattr(signal, name, None) for name in STOP_SIGNALS)
            if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN
        ]
        previous = {sig: signal.signal(sig, on_signal) for sig in signals}
        try:
            events = _until(run.events(), asked if trainer.world.size == 1 else [])
            if lead:
                _show_events(trainer, events, console, json_out, head)
            else:
                for _ in events:
                    pass
        except OutputError as e:
            if (
                trainer.world.size > 1
            ):  # saving is collective and the other ranks are stepping on: end the job
                raise
            message = save_and_say(f"as the output failed ({e.strerror})")
            if e.errno == errno.EPIPE:
                raise
            raise RnncliError(f"cannot write the output: {message}") from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if trainer.finished and lead:
            warm_generation(trainer)
        if (asked or trainer.interrupted) and not trainer.finished:
            signum = asked[0] if asked else signal.SIGTERM  # (a rank other than this one was signalled)
            said = save_and_say(f"by {signal.Signals(signum).name}")
            if lead:
                console.print(f"rnncli: {said}", markup=False)
            raise Stopped(signum)


def warm_generation(trainer) -> None:
    """A first run compiles generation's kernels too, after training (so that the first `generate`
    starts at once): two tokens of the trained model, thrown away."""
    from rnncli.kernels.jit import compiled_on_disk
    from rnncli.model.config import SampleConfig
    from rnncli.run.sample import generate

    if trainer.K.NAME != "cpu" or compiled_on_disk("decode"):
        return
    tok = trainer.tokenizer
    prompt = tok.decoder()([len(tok) - 1], True)
    for _ in generate((trainer.model, tok, None), [prompt], SampleConfig(length=2, rng_seed=0)):
        pass


def _show_events(trainer, events, console: Console, json_out: bool, head: list) -> None:
    if json_out:
        for ev in events:
            print("".join(json.dumps(h) + "\n" for h in head) + json.dumps(ev), flush=True)
            head = []
    else:
        _show(trainer, console, events)


def _until(events, asked: list):
    """The events, ending after the first one that arrives once `asked` is not empty: each event
    comes after a whole step, so what is saved then is consistent."""
    for ev in events:
        yield ev
        if asked:
            return


def _show(trainer, console: Console, events) -> None:
    cfg = trainer.cfg
    m = trainer.model.cfg
    console.print(
        f"rnncli: {m.cell} {m.layers}x{m.hidden}, {m.n_params:,} parameters, vocabulary {m.vocab_size} "
        f"({cfg.tokenizer}); {trainer.streams.n_windows} windows of {cfg.batch}x{cfg.seq} per epoch"
    )
    live = console.is_terminal
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, disable=not live, transient=False) as bar:
        task = bar.add_task("train", total=1.0, info="")
        val = None
        for ev in events:
            if ev["event"] == "done":
                best = ev["best_val_loss"]
                session = (
                    f" ({ev['session_steps']:,} steps, {ev['elapsed_s']:.0f} s this session)"
                    if ev["session_steps"] != ev["step"]
                    else ""
                )
                console.print(
                    f"rnncli: saved {ev['checkpoint']} after {ev['step']:,} steps "
                    f"in {ev['run_elapsed_s']:.0f} s{session}"
                    + (
                        f" (+ {ev['compile_s']:.0f} s compiling the kernels, once)"
                        if ev["compile_s"] > 1
                        else ""
                    )
                    + (
                        f" (best validation loss {best:.4f} nats at step {ev['best_step']})"
                        if best is not None
                        else ""
                    )
                )
                if ev["early_stop"]:
                    console.print(
                        f"rnncli: stopped early: {cfg.patience} validations without a new best "
                        "(the best weights are what is saved)"
                    )
                break
            val = ev.get("val_loss", val)
            rate = ev["tokens_per_s"]
            info = f"step {ev['step']}  loss {ev['train_loss']:.3f}  val {_fmt(val, '.3f')}  " + (
                f"{rate / 1000:.1f}k tok/s" if rate else ""
            )
            bar.update(task, completed=ev["progress"], info=info)
            if "val_loss" in ev or (
                not live and "best_val_loss" not in ev and ev["step"] % trainer.cfg.eval_every == 0
            ):
                (bar.console if live else console).print(_line(ev))
    sys.stderr.flush()
