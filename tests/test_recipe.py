"""The automatic recipe: the choice (a pure function of corpus, budget, speed and the user's flags),
and how train, --plan, the checkpoint and resuming carry it."""

import json
from pathlib import Path

import pytest

from rnncli.base.errors import RnncliError
from rnncli.model import recipe
from rnncli.model.config import ModelConfig, TrainConfig, from_dict, to_dict
from rnncli.model.recipe import Corpus, choose
from tests.helpers import FakeClock
from tests.hostile import run_cli

CORPUS = str(Path(__file__).parent.parent / "sample_corpora" / "forecasts.txt")

SHAKESPEARE = Corpus(train_tokens=1_059_624, val_tokens=55_770, vocab_size=65)
SMALL = Corpus(train_tokens=146_000, val_tokens=7_700, vocab_size=60)
RATE = 17.4e9 * 3  # training multiply-adds a second: a 2-core Zen 2 (GRU 2x256 at ~28k tokens/s)


def test_the_choice_is_deterministic_and_grows_with_the_budget():
    widths = []
    for seconds in (30, 120, 600, 1800, 7200):
        a = choose(SHAKESPEARE, {}, {"time": seconds}, RATE)
        assert a == choose(SHAKESPEARE, {}, {"time": seconds}, RATE)
        widths.append(a.model["hidden"])
        assert (
            a.train["time"] == seconds
            and a.train["lr_schedule"] == "cosine"
            and a.train["patience"] == recipe.PATIENCE
        )
        assert a.seconds == pytest.approx(seconds, rel=0.15)  # validations take the rest
        ModelConfig(vocab_size=65, **a.model), TrainConfig(**a.train)  # valid settings
    assert widths == sorted(widths) and widths[0] < widths[-1]
    # a faster machine buys a wider model in the same time
    assert (
        choose(SHAKESPEARE, {}, {"time": 600}, 4 * RATE).model["hidden"]
        > choose(SHAKESPEARE, {}, {"time": 600}, RATE).model["hidden"]
    )


def test_size_follows_the_tokens_a_budget_buys_and_the_text_can_fill():
    a = choose(SHAKESPEARE, {}, {"time": 600}, RATE)
    params = ModelConfig(vocab_size=65, **a.model).n_params
    assert a.tokens >= recipe.TOKENS_PER_PARAM * params
    wider = recipe.HIDDEN[recipe.HIDDEN.index(a.model["hidden"]) + 1]
    b = choose(SHAKESPEARE, {"hidden": wider}, {"time": 600}, RATE)  # the next width misses
    assert b.tokens < recipe.TOKENS_PER_PARAM * ModelConfig(vocab_size=65, **b.model).n_params
    assert "the widest within what the budget can train" in a.why
    # a small text caps the size whatever the time, and many epochs of it bring dropout
    long = choose(SMALL, {}, {"time": 36000}, RATE)
    assert ModelConfig(vocab_size=60, **long.model).n_params <= recipe.PARAMS_PER_TOKEN * SMALL.train_tokens
    assert long.model["dropout"] == 0.5 and long.epochs > 100 and "what the text can fill" in long.why
    huge = choose(Corpus(500_000_000, 262_144, 65), {}, {"time": 1e6}, RATE)
    assert huge.model["hidden"] == recipe.HIDDEN[-1] and "widest candidate" in huge.why
    # a word vocabulary on little text
    words = choose(Corpus(250_000, 10_000, 20_000), {}, {"time": 300}, RATE)
    assert words.model["hidden"] == recipe.HIDDEN[0] and "what the text can fill" in words.why
    assert words.model["embed"] == recipe.HIDDEN[0]  # (its word vectors no wider than the network)
    wordy = choose(Corpus(100_000, 10_000, 20_000), {}, {"time": 300}, RATE)
    assert wordy.model["hidden"] == recipe.HIDDEN[0] and "even it exceeds" in wordy.why
    # one pass: nothing to overfit
    assert choose(SHAKESPEARE, {}, {"epochs": 1}, None).model["dropout"] == 0.0


def test_steps_and_epochs_need_no_speed_and_the_nearest_stop_counts():
    a = choose(SHAKESPEARE, {}, {"steps": 500}, None)
    assert (
        a.tokens == 500 * 64 * 100 and a.seconds is None and a.train["steps"] == 500 and "time" not in a.train
    )
    assert choose(SHAKESPEARE, {}, {"epochs": 2}, None).tokens == pytest.approx(2 * SHAKESPEARE.train_tokens)
    both = choose(SHAKESPEARE, {}, {"steps": 100, "epochs": 2}, None)
    assert both.tokens == 100 * 64 * 100
    assert choose(SHAKESPEARE, {}, {}, RATE).train["time"] == recipe.DEFAULT_TIME  # no stop: five minutes
    with pytest.raises(ValueError):
        choose(SHAKESPEARE, {}, {"time": 60}, None)
    with pytest.raises(RnncliError, match="--time 60 buys about 0 steps of a 2x2048 gru"):
        choose(SHAKESPEARE, {"hidden": 2048}, {"time": 60}, RATE)


def test_every_setting_the_user_gives_wins_and_is_not_listed_as_chosen():
    model = {"cell": "lstm", "hidden": 200, "dropout": 0.1}
    train = {"time": 600, "batch": 16, "lr": 1e-3, "patience": 9, "out": "x.st", "eval_every": 7}
    a = choose(SHAKESPEARE, model, train, RATE)
    assert {k: a.model[k] for k in model} == model
    assert (
        a.train["batch"] == 16
        and a.train["lr"] == 1e-3
        and a.train["patience"] == 9
        and a.train["eval_every"] == 7
    )
    assert (
        "out" not in a.train
        and not set(model) & set(a.chosen)
        and not {"batch", "lr", "time"} & set(a.chosen)
    )
    assert "width you gave" in a.why
    assert (
        choose(SHAKESPEARE, {"cell": "lstm"}, {"time": 600}, RATE).model["hidden"]
        < choose(SHAKESPEARE, {}, {"time": 600}, RATE).model["hidden"]
    )


def test_windows_keep_enough_of_them_per_epoch_and_a_stream_per_rank():
    assert recipe.windows(1_059_624) == (64, 100)
    for tokens in (146_000, 20_000, 3_000, 500):
        batch, seq = recipe.windows(tokens)
        assert batch * seq * recipe.MIN_WINDOWS <= tokens or (batch, seq) == (1, 8)
    assert recipe.windows(146_000) == (32, 64)
    assert recipe.windows(3_000, world_size=4)[0] >= 4
    assert recipe.windows(1_059_624, world_size=128) == (128, 100)  # more ranks than 64 streams: one each
    # one of batch and seq given: the other fitted to it, keeping 50 windows an epoch
    assert recipe.layout(SMALL, {"batch": 256}) == (256, 8) and recipe.layout(SMALL, {"batch": 8}) == (8, 100)
    assert recipe.layout(SMALL, {"seq": 10}) == (64, 10) and recipe.layout(SMALL, {"seq": 100}) == (16, 100)
    # nothing to validate on
    assert choose(Corpus(10_000, 0, 30), {}, {"steps": 10}, None).train["patience"] is None


def test_the_speed_is_read_from_two_probes_and_an_optimizer_step(monkeypatch):
    """On a clock of the test's own: the wide probe's steps take 3 s (the first: compiling, reported,
    not counted), 0.5, 0.25 and 1 s; the narrow one's 0.2, 0.1, 0.05, 0.08; Adam's 0.01, 0.002, 0.001,
    0.003. The fastest of each counts; the products' rate comes from the difference of the probes
    (at least half the wide step), the vocabulary's cost from what the narrow step has left over."""
    from rnncli.kernels.cpu import backend as cpu

    steps = [3.0, 0.5, 0.25, 1.0, 0.2, 0.1, 0.05, 0.08, 0.01, 0.002, 0.001, 0.003]
    readings = iter([x for i, d in enumerate(steps) for x in (10.0 * i, 10.0 * i + d)])
    monkeypatch.setattr(recipe, "clock", lambda: next(readings))
    corpus, model, tokens = Corpus(5000, 500, 40), {"hidden": 32}, 4 * 16
    speed, first = recipe.probe_speed(cpu, corpus, model, 4, 16, steps=3)
    wide, narrow = recipe.probe_config(corpus, model), recipe.probe_config(corpus, {"hidden": 16}, 16)
    mw, mn = (c.macs_per_token(tokens, training=True) * tokens for c in (wide, narrow))  # (the window it ran)
    per_mac = max((0.25 - 0.05) / (mw - mn), 0.5 * 0.25 / mw)
    assert first == 3.0
    assert speed.macs_per_s == pytest.approx(1 / per_mac)
    assert speed.vocab_s == pytest.approx(max(0.0, 0.05 - per_mac * mn) / (tokens * 40))
    assert speed.param_s == pytest.approx(0.001 / wide.n_params)
    # (what it was measured on)
    assert speed.token_seconds(wide, tokens) * tokens == pytest.approx(0.25 + 0.001, rel=0.3)


def test_train_takes_the_recipe_stores_it_and_resume_keeps_it(tmp_path):
    out = tmp_path / "m.st"
    code, stdout, err = run_cli("train", CORPUS, "--steps", "6", "--embed", "8", "--out", str(out), "--json")
    assert code == 0, err
    events = [json.loads(line) for line in stdout.splitlines()]
    first = events[0]
    assert first["event"] == "recipe" and first["model"]["cell"] == "gru" and first["model"]["embed"] == 8
    assert "embed" not in first["chosen"] and "steps" not in first["chosen"] and "hidden" in first["chosen"]
    info = json.loads(run_cli("inspect", str(out), "--json")[1])
    assert info["recipe"]["why"] == first["why"] and info["train"]["recipe"] == "auto"
    assert (
        info["train"]["batch"] == first["train"]["batch"]
        and info["model"]["hidden"] == first["model"]["hidden"]
    )
    code, stdout, err = run_cli("train", CORPUS, "--resume", str(out), "--steps", "8", "--json")
    assert code == 0, err
    assert json.loads(stdout.splitlines()[0])["event"] == "step"  # (the recipe is said once, at the start)
    assert json.loads(run_cli("inspect", str(out), "--json")[1])["recipe"] == info["recipe"]


def test_plan_prints_the_recipe_and_trains_nothing(tmp_path):
    out = tmp_path / "m.st"
    code, stdout, err = run_cli("train", CORPUS, "--time", "30", "--plan", "--out", str(out))
    assert code == 0, err
    assert (
        stdout.startswith("recipe (auto): gru 2x") and "why: 30 s at " in stdout and "predicted: " in stdout
    )
    assert not out.exists()
    code, stdout, _ = run_cli("train", CORPUS, "--steps", "40", "--plan", "--json", "--out", str(out))
    plan = json.loads(stdout)
    assert (
        plan["train"]["steps"] == 40 and plan["seconds"] > 0 and plan["parameters"] > 0 and not out.exists()
    )
    # (a resumed run's plan: test_first_hour)
    code, _, err = run_cli("train", CORPUS, "--plan", "--resume", str(out))
    assert code == 1 and "no such checkpoint" in err


def test_plain_recipe_keeps_char_rnns_settings(tmp_path):
    out = tmp_path / "p.st"
    code, stdout, err = run_cli(
        "train", CORPUS, "--recipe", "plain", "--steps", "2", "--out", str(out), "--json"
    )
    assert code == 0, err
    assert json.loads(stdout.splitlines()[0])["event"] == "step"
    info = json.loads(run_cli("inspect", str(out), "--json")[1])
    assert info["model"]["cell"] == "lstm" and info["model"]["hidden"] == 128 and info["train"]["batch"] == 50
    assert "recipe" not in info
    code, _, err = run_cli("train", CORPUS, "--recipe", "fancy", "--steps", "2", "--out", str(out))
    assert code == 1 and "--recipe" in err


def test_a_file_from_before_the_recipe_reads_as_plain():
    old = {k: v for k, v in to_dict(TrainConfig(recipe="plain")).items() if k != "recipe"}
    assert from_dict(TrainConfig, old).recipe == "plain"


def test_plan_writes_nothing_takes_no_lock_and_needs_no_writable_folder(tmp_path):
    from rnncli.store.checkpoint import WriteLock

    out = tmp_path / "m.st"
    lock = WriteLock(str(out))  # a run is writing it
    try:
        code, stdout, err = run_cli("train", CORPUS, "--steps", "40", "--plan", "--out", str(out))
        assert code == 0, err
        code, _, err = run_cli("train", CORPUS, "--steps", "1", "--out", str(out))
        assert code == 1 and "is writing" in err  # (what --plan skipped)
    finally:
        lock.release()
    code, stdout, err = run_cli("train", CORPUS, "--steps", "40", "--plan", "--out", "/no/such/folder/m.st")
    assert code == 0, err
    code, stdout, err = run_cli(
        "train", CORPUS, "--steps", "40", "--plan", "--recipe", "plain", "--out", str(out)
    )
    assert code == 0 and stdout.startswith("recipe (plain): ") and '"cell": "lstm"' in stdout


def test_time_counts_the_whole_run_and_a_stop_given_on_resume_replaces_the_chosen_one(tmp_path, monkeypatch):
    """On a clock of the test's own, each step 0.25 s: --time 3 stops at 3 s, after 12 steps; resumed
    with --time 5 the run trains two more seconds, not five."""
    from rnncli.kernels import jit
    from rnncli.model.model import Model
    from rnncli.run.train import Trainer

    # (no first step set apart)
    monkeypatch.setattr(jit, "compiled_on_disk", lambda name="", exact=False: True)
    clock, step = FakeClock(), Model.loss_and_grads
    monkeypatch.setattr(
        Model, "loss_and_grads", lambda self, *a, **kw: clock.advance(0.25) or step(self, *a, **kw)
    )
    out = tmp_path / "t.st"
    small = {"batch": 8, "seq": 32, "recipe": "plain", "out": str(out)}
    for settings, resume in ((dict(small, time=3), None), ({"time": 5}, str(out))):
        with Trainer(
            [CORPUS], {"hidden": 16, "embed": 8} if resume is None else {}, settings, resume=resume
        ) as t:
            t.clock = clock
            done = list(t.run())[-1]
        if resume is None:
            first = json.loads(run_cli("inspect", str(out), "--json")[1])["progress"]
    assert first["elapsed_s"] == 3.0 and first["step"] == 12
    second = json.loads(run_cli("inspect", str(out), "--json")[1])
    assert second["progress"]["elapsed_s"] == 5.0 and second["progress"]["step"] == done["step"] == 20
    assert second["train"]["time"] == 5
    # the default run's 300 s is the recipe's choice: a stop given on resume replaces it
    from rnncli.run.train import Trainer

    with Trainer([CORPUS], {"hidden": 16, "embed": 8}, {"out": str(tmp_path / "d.st")}) as t:
        assert t.cfg.time == recipe.DEFAULT_TIME and "time" in t.recipe["chosen"]
        next(iter(t.run()))
        t.save()
    with Trainer([CORPUS], {}, {"steps": 3}, resume=str(tmp_path / "d.st")) as t:
        assert t.cfg.time is None and t.cfg.steps == 3
    with Trainer([CORPUS], {}, {}, resume=str(tmp_path / "d.st")) as t:
        assert t.cfg.time == recipe.DEFAULT_TIME  # (no stop given: the run's own)
    with pytest.raises(RnncliError, match="has run its 5 s"):  # a time the user gave stays (and is reached)
        Trainer([CORPUS], {}, {"steps": 30}, resume=str(out))
