"""Training runs, checkpoints and exact resumption, on small text made here."""

import json
import math

import numpy as np
import pytest

from rnncli.base.errors import RnncliError
from rnncli.run.runs import More
from rnncli.run.train import Trainer
from rnncli.store import checkpoint
from rnncli.store.load import load_model
from tests.helpers import FakeClock

TINY = {"hidden": 16, "embed": 8}


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "the", "and", "river", "stone"]
    text = " ".join(rng.choice(words, 3000)) + "\n"
    path = tmp_path / "corpus.txt"
    path.write_text(text)
    return str(path)


def run(trainer):
    return [ev for ev in trainer.run()]


def test_training_lowers_the_loss_and_keeps_the_best_weights(corpus, tmp_path):
    out = str(tmp_path / "m.safetensors")
    t = Trainer(
        [corpus], dict(TINY, cell="gru"), dict(batch=8, seq=16, steps=60, eval_every=20, lr=0.01, out=out)
    )
    events = run(t)
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == 60 and events[-1]["event"] == "done"
    vals = [e["val_loss"] for e in steps if "val_loss" in e]
    assert len(vals) == 3 and vals[-1] < vals[0] < math.log(t.model.cfg.vocab_size) + 0.2
    assert {"step", "train_loss", "tokens_per_s"} <= steps[-1].keys()
    model, tok, meta = load_model(out)
    assert meta["progress"]["best_val_loss"] == pytest.approx(min(vals))
    np.testing.assert_array_equal(model.params.data, t.best.data)
    assert [h[0] for h in meta["history"]] == [20, 40, 60]
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"
    from safetensors.numpy import load_file  # (the format's own reader: our files are its files)

    theirs = load_file(out)
    for name, shape in model.cfg.tensor_shapes():
        assert theirs[name].shape == shape and theirs[name].dtype == np.float32
        np.testing.assert_array_equal(theirs[name], model.params.host()[name])


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_resume_continues_exactly(corpus, tmp_path, cell):
    """Six steps in one go equal three, an interruption that saves, and the rest resumed (dropout,
    carried state, schedule and optimizer included)."""
    model = dict(TINY, cell=cell, layers=2, dropout=0.2)
    settings = dict(batch=4, seq=8, eval_every=3, rng_seed=5, lr_schedule="cosine", steps=6)
    a = Trainer([corpus], model, dict(settings, out=str(tmp_path / "a.safetensors")))
    run(a)
    b = Trainer([corpus], model, dict(settings, out=str(tmp_path / "b.safetensors")))
    for ev in b.run():
        if ev["step"] == 4:
            break  # as on Ctrl-C, past the last checkpoint
    b.save()
    b.close()  # as the process that ran it ends: another run may now write there
    c = Trainer([corpus], {}, {}, resume=str(tmp_path / "b.safetensors"))
    run(c)
    np.testing.assert_array_equal(a.model.params.data, c.model.params.data)
    np.testing.assert_array_equal(a.train_step.adam.v, c.train_step.adam.v)
    assert a.history == c.history


def test_resume_refuses_changed_architecture(corpus, tmp_path):
    out = str(tmp_path / "m.safetensors")
    run(Trainer([corpus], TINY, dict(batch=4, seq=8, steps=2, out=out)))
    with pytest.raises(RnncliError, match="hidden"):
        Trainer([corpus], {"hidden": 32}, {}, resume=out)


@pytest.mark.parametrize(
    "text,settings,message",
    [
        ("", {}, "empty"),
        ("abc" * 10, {"batch": 4, "seq": 50}, "too short"),
        ("abcdefgh" * 200, {"batch": 2, "seq": 50, "val_frac": 0.01}, "validation split"),
    ],
)
def test_bad_corpora_are_explained(tmp_path, text, settings, message):
    path = tmp_path / "c.txt"
    path.write_text(text)
    with pytest.raises(RnncliError, match=message):
        Trainer([str(path)], TINY, settings)


def test_checkpoint_files_are_checked(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(RnncliError, match="not a safetensors"):
        checkpoint.read_header(bad)
    with pytest.raises(RnncliError, match="no such checkpoint"):
        checkpoint.read_header(tmp_path / "none.safetensors")
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(2, np.float32)}, str(bad))
    with pytest.raises(RnncliError, match="not an rnncli checkpoint"):
        checkpoint.read_header(bad)


def test_checkpoint_metadata_is_json_strings(tmp_path):
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, {"w": np.ones(3, np.float32)}, {"model": {"a": 1}, "history": [[1, 2.0, None]]})
    raw = json.loads(path.read_bytes()[8 : 8 + int.from_bytes(path.read_bytes()[:8], "little")])[
        "__metadata__"
    ]
    assert all(isinstance(v, str) for v in raw.values())
    assert json.loads(raw["model"]) == {"a": 1}
    _, meta = checkpoint.read_header(path)
    assert meta["history"] == [[1, 2.0, None]] and meta["format_version"] == 2


def test_patience_stops_after_that_many_validations_without_a_new_best(corpus, tmp_path, monkeypatch):
    losses = iter([2.0, 1.5, 1.6, 1.55, 1.7, 1.8, 1.9])
    monkeypatch.setattr(Trainer, "validate", lambda self: next(losses))
    settings = dict(batch=2, seq=8, steps=50, eval_every=1, patience=3, out=str(tmp_path / "p.st"))
    with Trainer([str(corpus)], TINY, settings) as t:
        events = run(t)
    done = events[-1]
    assert done["early_stop"] and done["step"] == 5 and done["best_step"] == 2  # steps 3, 4, 5: no new best
    assert done["best_val_loss"] == 1.5
    with Trainer([str(corpus)], {}, {"patience": 4}, resume=str(tmp_path / "p.st")) as t:
        # resumed with a larger patience alone: the count goes on from the history (4th at step 6)
        again = run(t)
    assert again[-1]["early_stop"] and again[-1]["step"] == 6
    with pytest.raises(RnncliError, match=r"nothing left to do: .*stopped early \(4 validations.*--more"):
        Trainer([str(corpus)], {}, {}, resume=str(tmp_path / "p.st"))
    losses = iter([1.6, 1.7, 1.8, 1.9, 1.0])
    with Trainer([str(corpus)], {}, {}, resume=str(tmp_path / "p.st"), more=More("steps", 10)) as t:
        more = run(t)  # asked for more: patience counts afresh from step 6 (4 validations: 7, 8, 9, 10)
    assert more[-1]["early_stop"] and more[-1]["step"] == 10 and more[-1]["session_steps"] == 4


def test_the_first_compile_is_not_part_of_the_time_budget(corpus, tmp_path, monkeypatch):
    """On a clock of the test's own: the first step takes 2.125 s (compiling), each later one
    0.125 s; the 0.5 s budget buys four steps after the first, and the first is not charged to it."""
    from rnncli.kernels import jit
    from rnncli.model.model import Model

    monkeypatch.setattr(jit, "compiled_on_disk", lambda name="", exact=False: False)  # as on a cold cache
    clock, step = FakeClock(), Model.loss_and_grads

    def timed(self, *args, **kw):
        clock.advance(2.125 if clock.now == 0.0 else 0.125)
        return step(self, *args, **kw)

    monkeypatch.setattr(Model, "loss_and_grads", timed)
    settings = dict(batch=2, seq=8, time=0.5, eval_every=1000, out=str(tmp_path / "t.st"), recipe="plain")
    with Trainer([str(corpus)], TINY, settings) as t:
        t.clock = clock
        done = run(t)[-1]
    assert done["compile_s"] == 2.125 and done["step"] == 5  # steps went on after the slow one
    assert done["elapsed_s"] == 0.5 and done["train_s"] == 0.5  # the budget, without the 2.125 s
    assert done["tokens_per_s"] == 4 * 2 * 8 / 0.5


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"patience": 0}, "--patience must be at least 1"),
        ({"patience": 2, "val_frac": 0.0}, "needs --val-frac > 0"),
    ],
)
def test_patience_settings_are_checked(corpus, tmp_path, settings, message):
    with pytest.raises(RnncliError, match=message):
        Trainer([str(corpus)], TINY, dict(settings, out=str(tmp_path / "x.st")))


def test_the_loss_curve_keeps_every_step_in_bounded_space_and_resumes_exactly(corpus, tmp_path):
    from rnncli.cli.report import chart, describe
    from rnncli.run.curve import MAX_POINTS, LossCurve

    c = LossCurve()
    for step in range(1, 3001):
        c.add(step, float(step))
    assert len(c.points) < MAX_POINTS and c.points[-1][0] <= 3000 and c.all_points()[-1][0] == 3000
    covered = c.stride * len(c.points) + c.count
    assert covered == 3000 and abs(sum(p[1] for p in c.points) * c.stride + c.sum - 3000 * 3001 / 2) < 1e-6
    # (a constant lr: 3+4 steps = 7)
    settings = dict(batch=2, seq=8, eval_every=200, out=str(tmp_path / "c.st"), recipe="plain")
    with Trainer([str(corpus)], TINY, dict(settings, steps=7)) as t:
        losses = [e["train_loss"] for e in run(t) if e["event"] == "step"]
    with Trainer([str(corpus)], TINY, dict(settings, steps=3, out=str(tmp_path / "d.st"))) as t:
        run(t)
    with Trainer([str(corpus)], {}, {"steps": 7}, resume=str(tmp_path / "d.st")) as t:
        run(t)
    whole, resumed = describe(str(tmp_path / "c.st"))["curve"], describe(str(tmp_path / "d.st"))["curve"]
    assert [s for s, _ in whole] == list(range(1, 8)) and np.allclose([v for _, v in whole], losses)
    assert resumed == whole
    lines = chart([[7, 1.0, 2.0]], whole)  # one validation, seven training points: all drawn
    assert sum(line.count("·") for line in lines) >= 5 and sum(line.count("o") for line in lines) == 1
