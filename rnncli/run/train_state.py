"""The training state in a checkpoint: what `Trainer.save` writes beside the weights (optimizer
moments, carried state, progress, history, random state, the run's id and extension) and what
`--resume` restores from it, exactly."""

from __future__ import annotations

import math
import os

import numpy as np

from rnncli import __version__
from rnncli.model.config import to_dict
from rnncli.model.params import Params
from rnncli.run.curve import LossCurve
from rnncli.run.runs import extend
from rnncli.store import checkpoint


def restore(run, contents, tensors: dict) -> None:
    """Put a checkpoint's training state into a Trainer built for it (the model, Adam and streams made)."""
    p, meta, prog, K, step = run.model.params, contents.meta, contents.meta["progress"], run.K, run.train_step
    p.load(tensors, "resume." if "resume.embedding.weight" in tensors else "")
    run.best = Params(p.cfg, backend=K).load(tensors) if prog["best_step"] is not None else None
    K.copy_into(step.adam.m, K.asarray(Params(p.cfg).load(tensors, "optimizer.exp_avg.").data))
    K.copy_into(step.adam.v, K.asarray(Params(p.cfg).load(tensors, "optimizer.exp_avg_sq.").data))
    step.adam.step_count = prog["adam_step"]
    run.step, run.epoch, run.window = prog["step"], prog["epoch"], prog["window"]
    run.tokens_seen, run.elapsed_before = prog["tokens_seen"], prog["elapsed_s"]
    run.best_val = prog["best_val_loss"] if prog["best_val_loss"] is not None else math.inf
    run.best_step = prog["best_step"]
    run.saved_step = run.step if os.path.abspath(contents.path) == os.path.abspath(run.cfg.out) else None
    run.history = meta["history"]
    run.since_eval = prog.get("since_eval", [])
    run.curve = LossCurve.from_json(meta.get("curve"))
    run.rng.bit_generator.state = meta["rng"]  # validate.load has tried it
    b0, b1 = run.world.part(run.cfg.batch)
    step.h, step.c = (K.asarray(np.ascontiguousarray(tensors[f"state.{s}"][:, b0:b1])) for s in "hc")
    if run.window >= run.streams.n_windows:
        run.epoch, run.window = run.epoch + 1, 0
    run.extension, run.patience_from = prog.get("extension"), prog.get("patience_from", 0)
    if run.asked_more:
        run.patience_from = run.step
    if run.more is not None:
        extend(run, run.more)


def save(run) -> str:
    """Write the checkpoint: the best weights (or the latest, with no validation) under the model
    names, plus all that resuming needs. Every rank calls it (the carried states of all streams
    are gathered); the lead writes."""
    K, step = run.K, run.train_step
    states = [run.world.gather_streams(K.to_host(a), run.cfg.batch) for a in (step.h, step.c)]
    if not run.world.lead:
        run.saved_step = run.step  # (the lead wrote it: every rank's messages say the same)
        return run.cfg.out
    p = run.model.params.host()  # (copies, when the run is on a GPU)
    m, v = Params(p.cfg, K.to_host(step.adam.m)), Params(p.cfg, K.to_host(step.adam.v))
    for what, values in (("weights", p.data), ("Adam moments", m.data), ("Adam moments", v.data)):
        if not np.isfinite(values).all():  # an update overflowed: keep the last good file as it is
            raise run._diverged(what, "non-finite", run.step)
    best = run.best.host() if run.best is not None else p
    tensors = dict(best.views)
    if run.best is not None:
        tensors.update({"resume." + k: v for k, v in p.views.items()})
    tensors.update({"optimizer.exp_avg." + k: a for k, a in m.views.items()})
    tensors.update({"optimizer.exp_avg_sq." + k: a for k, a in v.views.items()})
    tensors["state.h"], tensors["state.c"] = states
    best_val = run.best_val if math.isfinite(run.best_val) else None
    meta = {
        "model": to_dict(p.cfg),
        "train": to_dict(run.cfg),
        "tokenizer": run.tokenizer.to_json(),
        "progress": {
            "step": run.step,
            "epoch": run.epoch,
            "window": run.window,
            "adam_step": step.adam.step_count,
            "tokens_seen": run.tokens_seen,
            "elapsed_s": run.elapsed_before + run._elapsed(),
            "best_val_loss": best_val,
            "best_step": run.best_step,
            "since_eval": run.since_eval,
            "patience_from": run.patience_from,
            **({"extension": run.extension} if run.extension else {}),
        },
        "history": run.history,
        "curve": run.curve.to_json(),
        "rng": run.rng.bit_generator.state,
        "corpus": run.corpus,
        "run_id": run.run_id,
        "rnncli_version": __version__,
    }
    if run.recipe is not None:
        meta["recipe"] = run.recipe
    checkpoint.save(run.cfg.out, tensors, meta)
    run.saved_step = run.step
    return run.cfg.out
