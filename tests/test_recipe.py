"""The automatic recipe: the choice (a pure function of corpus, budget, speed and the user's flags),
and how train, --plan, the checkpoint and resuming carry it."""
import json
from pathlib import Path

import pytest

from rnncli import recipe
from rnncli.config import ModelConfig, TrainConfig
from rnncli.recipe import Corpus, choose
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
        assert a.train["time"] == seconds and a.train["lr_schedule"] == "cosine" and a.train["patience"] == recipe.PATIENCE
        assert a.seconds == pytest.approx(seconds, rel=0.15)  # validations take the rest
        ModelConfig(vocab_size=65, **a.model), TrainConfig(**a.train)  # valid settings
    assert widths == sorted(widths) and widths[0] < widths[-1]
    # a faster machine buys a wider model in the same time
    assert choose(SHAKESPEARE, {}, {"time": 600}, 4 * RATE).model["hidden"] > choose(SHAKESPEARE, {}, {"time": 600}, RATE).model["hidden"]


def test_size_follows_the_tokens_a_budget_buys_and_the_text_can_fill():
    a = choose(SHAKESPEARE, {}, {"time": 600}, RATE)
    params = ModelConfig(vocab_size=65, **a.model).n_params
    assert a.tokens >= recipe.TOKENS_PER_PARAM * params
    wider = recipe.HIDDEN[recipe.HIDDEN.index(a.model["hidden"]) + 1]
    wider_params = ModelConfig(vocab_size=65, **dict(a.model, hidden=wider)).n_params
    assert a.tokens * params / wider_params < recipe.TOKENS_PER_PARAM * wider_params * 1.3  # (roughly the next one misses)
    # a small text caps the size whatever the time, and many epochs of it bring dropout
    long = choose(SMALL, {}, {"time": 36000}, RATE)
    assert ModelConfig(vocab_size=60, **long.model).n_params <= recipe.PARAMS_PER_TOKEN * SMALL.train_tokens
    assert long.model["dropout"] == 0.5 and long.epochs > 100
    assert choose(SHAKESPEARE, {}, {"epochs": 1}, None).model["dropout"] == 0.0  # one pass: nothing to overfit


def test_steps_and_epochs_need_no_speed_and_the_nearest_stop_counts():
    a = choose(SHAKESPEARE, {}, {"steps": 500}, None)
    assert a.tokens == 500 * 64 * 100 and a.seconds is None and a.train["steps"] == 500 and "time" not in a.train
    assert choose(SHAKESPEARE, {}, {"epochs": 2}, None).tokens == pytest.approx(2 * SHAKESPEARE.train_tokens)
    both = choose(SHAKESPEARE, {}, {"steps": 100, "epochs": 2}, None)
    assert both.tokens == 100 * 64 * 100
    assert choose(SHAKESPEARE, {}, {}, RATE).train["time"] == recipe.DEFAULT_TIME  # no stop: five minutes
    with pytest.raises(ValueError):
        choose(SHAKESPEARE, {}, {"time": 60}, None)


def test_every_setting_the_user_gives_wins_and_is_not_listed_as_chosen():
    model = {"cell": "lstm", "hidden": 200, "dropout": 0.1}
    train = {"time": 600, "batch": 16, "lr": 1e-3, "patience": 9, "out": "x.st", "eval_every": 7}
    a = choose(SHAKESPEARE, model, train, RATE)
    assert {k: a.model[k] for k in model} == model
    assert a.train["batch"] == 16 and a.train["lr"] == 1e-3 and a.train["patience"] == 9 and a.train["eval_every"] == 7
    assert "out" not in a.train and not set(model) & set(a.chosen) and not {"batch", "lr", "time"} & set(a.chosen)
    assert "width you gave" in a.why
    assert choose(SHAKESPEARE, {"cell": "lstm"}, {"time": 600}, RATE).model["hidden"] < choose(SHAKESPEARE, {}, {"time": 600}, RATE).model["hidden"]


def test_windows_keep_enough_of_them_per_epoch_and_a_stream_per_rank():
    assert recipe.windows(1_059_624) == (64, 100)
    for tokens in (146_000, 20_000, 3_000, 500):
        batch, seq = recipe.windows(tokens)
        assert batch * seq * recipe.MIN_WINDOWS <= tokens or (batch, seq) == (1, 8)
    assert recipe.windows(146_000) == (32, 64)
    assert recipe.windows(3_000, world_size=4)[0] >= 4
    assert choose(Corpus(10_000, 0, 30), {}, {"steps": 10}, None).train["patience"] is None  # nothing to validate on


def test_the_rate_measured_predicts_plausible_speeds():
    from rnncli.kernels import cpu

    rate, first = recipe.measure(cpu, Corpus(5000, 500, 40), {"hidden": 32}, 4, 16)
    assert rate > 1e7 and first > 0


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
    assert info["train"]["batch"] == first["train"]["batch"] and info["model"]["hidden"] == first["model"]["hidden"]
    code, stdout, err = run_cli("train", CORPUS, "--resume", str(out), "--steps", "8", "--json")
    assert code == 0, err
    assert json.loads(stdout.splitlines()[0])["event"] == "step"  # (the recipe is said once, at the start)
    assert json.loads(run_cli("inspect", str(out), "--json")[1])["recipe"] == info["recipe"]


def test_plan_prints_the_recipe_and_trains_nothing(tmp_path):
    out = tmp_path / "m.st"
    code, stdout, err = run_cli("train", CORPUS, "--time", "30", "--plan", "--out", str(out))
    assert code == 0, err
    assert stdout.startswith("recipe (auto): gru 2x") and "why: 30 s at " in stdout and "predicted: " in stdout
    assert not out.exists()
    code, stdout, _ = run_cli("train", CORPUS, "--steps", "40", "--plan", "--json", "--out", str(out))
    plan = json.loads(stdout)
    assert plan["train"]["steps"] == 40 and plan["seconds"] > 0 and plan["parameters"] > 0 and not out.exists()
    code, _, err = run_cli("train", CORPUS, "--plan", "--resume", str(out))
    assert code == 1 and "--plan" in err


def test_plain_recipe_keeps_char_rnns_settings(tmp_path):
    out = tmp_path / "p.st"
    code, stdout, err = run_cli("train", CORPUS, "--recipe", "plain", "--steps", "2", "--out", str(out), "--json")
    assert code == 0, err
    assert json.loads(stdout.splitlines()[0])["event"] == "step"
    info = json.loads(run_cli("inspect", str(out), "--json")[1])
    assert info["model"]["cell"] == "lstm" and info["model"]["hidden"] == 128 and info["train"]["batch"] == 50
    assert "recipe" not in info
    code, _, err = run_cli("train", CORPUS, "--recipe", "fancy", "--steps", "2", "--out", str(out))
    assert code == 1 and "--recipe" in err
