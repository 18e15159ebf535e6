"""The Python API (rnncli.load, Model, rnncli.train, Run): the README's examples run as written,
and each call gives what the matching command prints, from the same library call."""

import json
import os
import pydoc
import re
import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest

import rnncli
from rnncli import ModelSettings, RunOptions, TrainSettings
from tests.hostile import run_cli

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "sample_corpora" / "dialogues.txt"
TINY = dict(batch=4, seq=16, eval_every=5, recipe="plain")


def readme_examples() -> list[str]:
    section = re.search(r"^## Use from Python\n(.*?)(?=^## )", (ROOT / "README.md").read_text(), re.M | re.S)
    assert section, "README.md has no 'Use from Python' section"
    return re.findall(r"^```python\n(.*?)^```", section.group(1), re.M | re.S)


def test_the_readme_examples_run_as_written(tmp_path, monkeypatch, capsys):
    (tmp_path / "notes.txt").write_bytes(CORPUS.read_bytes()[:40_000])
    monkeypatch.chdir(tmp_path)
    blocks = readme_examples()
    assert len(blocks) >= 3
    scope = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 (our own README)
    out = capsys.readouterr().out
    assert "parameters" in out and "validation loss" in out and "bits per character" in out
    assert "no such checkpoint: missing.safetensors" in out
    assert (tmp_path / "notes.safetensors").is_file()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "m.safetensors"
    with rnncli.train(
        str(CORPUS),
        ModelSettings(cell="gru", hidden=16, embed=8),
        TrainSettings(steps=10, **TINY),
        RunOptions(out=str(out)),
    ) as run:
        events = list(run)
    return out, events


def test_train_yields_typed_events_and_a_last_done(trained):
    path, events = trained
    steps, done = events[:-1], events[-1]
    assert [e.step for e in steps] == list(range(1, 11)) and isinstance(done, rnncli.DoneEvent)
    assert all(isinstance(e, rnncli.StepEvent) for e in steps)
    assert [e.step for e in steps if e.val_loss is not None] == [5, 10]
    assert (
        done.step == 10
        and done.checkpoint == str(path)
        and done.best_val_loss == min(e.val_loss for e in steps if e.val_loss is not None)
    )
    assert "val_loss" not in steps[0].to_json() and steps[4].to_json()["event"] == "step"
    with pytest.raises(FrozenInstanceError):
        steps[0].step = 3  # frozen


def test_load_and_generate_give_what_the_commands_print(trained):
    path, _ = trained
    model = rnncli.load(str(path), "cpu")
    assert (model.config.cell, model.config.hidden, model.tokenizer) == ("gru", 16, "char")
    assert len(model.vocab) == model.config.vocab_size and "lstm" not in repr(model)
    text = model.generate("ROMEO:", 50, rng_seed=3, temperature=0.9)
    code, out, err = run_cli(
        "generate", str(path), "-p", "ROMEO:", "-n", "50", "--rng-seed", "3", "-t", "0.9", "--no-echo"
    )
    assert code == 0 and out == text and len(text) > 0
    assert "".join(model.stream("ROMEO:", 50, rng_seed=3, temperature=0.9)) == text
    many = model.generate("A", 12, n=3, rng_seed=1)
    assert isinstance(many, list) and len(many) == 3
    greedy = model.answers(["A", "B"], 8, greedy=True)
    assert [g.prompt for g in greedy] == ["A", "B"] and all(g.stop_reason == "length" for g in greedy)


def test_score_and_probe_agree_with_eval_and_inspect(trained, tmp_path):
    path, _ = trained
    model = rnncli.load(str(path))
    sample = CORPUS.read_text()[:3000]
    (tmp_path / "s.txt").write_text(sample)
    score = model.score(sample)
    code, out, _ = run_cli("eval", str(path), str(tmp_path / "s.txt"), "--json")
    assert code == 0 and json.loads(out) == score.to_json()
    assert 0 < score.tokens < len(sample) and score.chars > 0
    probe = model.probe(sample[:400], top=3, states=[(1, "h")])
    assert probe.loss.shape == (probe.n,) and np.isnan(probe.loss[0]) and probe.top_ids.shape == (probe.n, 3)
    assert probe.acts[(1, "h")].shape == (probe.n, 16) and "".join(probe.tokens) == sample[:400]
    (tmp_path / "p.txt").write_text(sample[:400])
    code, _, err = run_cli("inspect", str(path), "--text", str(tmp_path / "p.txt"))
    assert code == 0 and f"mean surprise {probe.mean_loss():.4f} nats/token" in err
    with pytest.raises(rnncli.RnncliError, match="not a state of this gru"):
        model.probe("abc", states=[(0, "c")])


def test_errors_are_rnncli_errors_with_the_cli_s_sentences(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(rnncli.RnncliError) as caught:
        rnncli.load(str(bad))
    code, _, err = run_cli("inspect", str(bad), "--text", "-")
    assert code == 1 and err.strip() == f"rnncli: error: {caught.value}"
    with pytest.raises(rnncli.RnncliError, match="--hidden must be at least 1, not 0"):
        ModelSettings(hidden=0)
    with pytest.raises(rnncli.RnncliError, match="unknown --lr-schedule"):
        TrainSettings(lr_schedule="fast")
    with pytest.raises(rnncli.RnncliError, match="unknown --device"):
        RunOptions(device="tpu")


def test_a_run_stops_when_asked_saved_and_resumable(tmp_path):
    out = tmp_path / "s.safetensors"
    settings = (ModelSettings(cell="rnn", hidden=8, embed=4), TrainSettings(steps=50, **TINY))
    with rnncli.train(str(CORPUS), *settings, RunOptions(out=str(out))) as run:
        assert run.plan()["parameters"] == run.config.n_params
        for event in run:
            if event.step == 3:
                run.stop()
    assert event.step == 3 and isinstance(event, rnncli.StepEvent)
    with rnncli.train(str(CORPUS), run=RunOptions(resume=str(out), more="2steps"), plan=True) as again:
        plan = again.plan()
    assert plan["resume"] is True and plan["step"] == 3 and plan["stop"] == {"steps": 5}


def test_import_rnncli_loads_no_numba_and_help_reads_well():
    code = "import sys, rnncli; rnncli.load; rnncli.train; print('numba' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip()
        == "False"
    )
    page = pydoc.render_doc(rnncli.Model, renderer=pydoc.plaintext)
    for name in ("generate", "stream", "score", "probe", "config", "vocab"):
        assert name in page
    assert set(rnncli.__all__) <= set(dir(rnncli)) and rnncli.__version__
