"""The HTML page of `inspect --html` (cli/page.py, cli/page_assets/): self-contained, within its byte budget,
its data decoding back to the probe's, shipped as package data; then opened in headless Chromium,
where its #selftest works the controls and its match agrees with neurons.match_span."""

import base64
import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from rnncli.base.errors import RnncliError
from rnncli.cli.page import build_page, write_page
from rnncli.model.config import ModelConfig
from rnncli.model.model import Model
from rnncli.model.params import init_params
from rnncli.run.neurons import Found, find_neurons, match_span
from rnncli.run.probe import Probe, probe_ids

TEXT = (
    'He said "stop here" and left.\n  The 3 cats (and 2 dogs) ran; "why?" asked Ann.\n'
    "Nothing {quoted} here, only [brackets].\n"
) * 20
META = re.compile(r'<script type="application/json" id="rnn-meta">(.*?)</script>', re.S)
UNIT = re.compile(
    r'<script type="application/x-rnncli-unit" id="u(\d+)([hc])(\d+)"'
    r'(?: data-lo="([^"]*)" data-hi="([^"]*)")?>([^<]*)</script>'
)
INFO = {"title": "t.txt", "cell": "lstm", "layers": 2, "hidden": 24, "tokenizer": "char"}


def model_probe(text=TEXT, cell="lstm", H=24, layers=2, seed=0) -> Probe:
    """A Probe of `text` by a randomly initialised model with a character vocabulary."""
    vocab = sorted(set(text))
    ids = np.array([vocab.index(ch) for ch in text], np.int64)
    cfg = ModelConfig(vocab_size=len(vocab), cell=cell, layers=layers, hidden=H, embed=8)
    model = Model(init_params(cfg, np.random.default_rng(seed)))
    states = [(k, s) for k in range(layers) for s in "hc" if s == "h" or cell == "lstm"]
    out = probe_ids(model, ids, seq=32, max_batch=4, top_k=5, states=states)
    return Probe(list(text), ids, **out, vocab=vocab)


def synthetic_probe(n, H, layers=2, seed=1) -> Probe:
    """A Probe made up without a model: units of varied spread, so that variance ranks them."""
    rng = np.random.default_rng(seed)
    vocab = [chr(c) for c in range(32, 127)] + ["\n"]
    ids = rng.integers(0, len(vocab), n)
    loss = rng.exponential(2.0, n).astype(np.float32)
    loss[0] = np.nan
    top_p = np.sort(rng.dirichlet(np.ones(8), n)[:, :5], axis=1)[:, ::-1].astype(np.float32)
    acts = {}
    for k in range(layers):
        spread = rng.uniform(0.05, 2.0, H)
        x = rng.standard_normal((n, H)) * spread
        acts[(k, "h")] = np.tanh(x).astype(np.float32)
        acts[(k, "c")] = (3 * x + rng.uniform(-1, 1, H)).astype(np.float32)
    return Probe(
        [vocab[i] for i in ids],
        ids,
        loss,
        rng.integers(0, len(vocab), (n, 5)).astype(np.int32),
        np.ascontiguousarray(top_p),
        acts,
        vocab,
    )


def parse(page: str):
    """The embedded data: the meta JSON and {(layer, state, unit): decoded values (n,) float64}."""
    meta = json.loads(META.search(page).group(1))
    units = {}
    for layer, state, unit, lo, hi, b64 in UNIT.findall(page):
        lo, hi = (float(lo), float(hi)) if lo else (-1.0, 1.0)
        q = np.frombuffer(base64.b64decode(b64), np.uint8).astype(np.float64)
        units[(int(layer), state, int(unit))] = lo + q * ((hi - lo) / 255)  # as the script decodes
    return meta, units


def test_the_page_is_self_contained_and_hostile_text_stays_text(tmp_path):
    tokens = list("ab") + [
        "</script><script>alert(1)</script>",
        "<!--",
        "&amp;",
        "\u2028",
        "\ud800",
        "{{js}}",
        "\n",
    ]
    vocab = sorted(set(tokens))
    probe = model_probe()
    probe = Probe(
        tokens,
        np.array([vocab.index(t) for t in tokens]),
        probe.loss[:9],
        probe.top_ids[:9] % len(vocab),
        probe.top_p[:9],
        {k: a[:9] for k, a in probe.acts.items()},
        vocab,
    )
    page = build_page(probe, [], {**INFO, "title": "<b>x</b>.txt"})
    for outside in ("http://", "https://", "src=", "url(", "@import", "<link", "href="):
        assert outside not in page, outside
    assert page.count("<script") == 2 + len(UNIT.findall(page)) and "&lt;b&gt;x&lt;/b&gt;.txt" in page
    meta, _ = parse(page)
    assert meta["tokens"] == tokens and meta["vocab"] == vocab
    write_page(tmp_path / "p.html", page)  # a lone surrogate would not encode: it is escaped in the JSON
    assert (tmp_path / "p.html").read_bytes() == page.encode("utf-8")


def test_losses_predictions_and_activations_decode_back():
    probe = model_probe()
    found, _ = find_neurons(probe.acts, probe.tokens)
    page = build_page(probe, found, INFO)
    meta, units = parse(page)
    loss = np.frombuffer(base64.b64decode(meta["loss"]), "<f4")
    assert np.isnan(loss[0]) and np.array_equal(loss[1:], probe.loss[1:])
    assert np.array_equal(
        np.frombuffer(base64.b64decode(meta["top_ids"]), "<u2").reshape(-1, 5), probe.top_ids
    )
    top_p = np.frombuffer(base64.b64decode(meta["top_p"]), np.uint8).reshape(-1, 5) / 255
    assert np.abs(top_p - probe.top_p).max() <= 0.5 / 255 + 1e-6
    assert len(units) == meta["total_units"] == 4 * 24 and "this page keeps" not in page  # all fit: all kept
    for (layer, state, unit), values in units.items():
        original = probe.acts[(layer, state)][:, unit]
        if state == "h":
            assert np.abs(values - original).max() <= 1 / 127
        else:
            lo, hi = original.min(), original.max()
            assert np.abs(values - original).max() <= (hi - lo) / 510 + 1e-5
    assert [tuple(f.values()) for f in meta["found"]] == [tuple(f.to_json().values()) for f in found]
    assert "mean loss" in page and f"{probe.mean_loss():.4f} nats/token" in page


def test_a_page_over_budget_keeps_found_then_named_then_the_most_variable_units():
    probe = synthetic_probe(20_000, 64)
    found = [Found("quote", 1, "c", 7, 0.9), Found("digit", 0, "h", 3, -0.8)]
    max_bytes = 2_000_000
    page = build_page(probe, found, {**INFO, "units": [(1, "h", 60)]}, max_bytes=max_bytes)
    size = len(page.encode("utf-8"))
    meta, units = parse(page)
    kept = len(units)
    assert size <= max_bytes and 0 < kept < meta["total_units"] == 256
    assert max_bytes - size < len(UNIT.search(page).group(0)) + 50, "room for another unit was left"
    assert f"this page keeps {kept} of 256 units (the found ones, then the most variable)" in page
    assert {(1, "c", 7), (0, "h", 3), (1, "h", 60)} <= set(units)
    for key, a in probe.acts.items():
        variance = a.astype(np.float64).var(0)
        mine = {u for (layer, state, u) in units if (layer, state) == key} - {7, 3, 60}
        rest = set(range(64)) - mine - {7, 3, 60}
        assert mine and min(variance[list(mine)]) >= max(variance[list(rest)]), key
    counts = [sum(1 for k in units if k[:2] == key) for key in probe.acts]
    assert max(counts) - min(counts) <= 2, counts  # each layer and state in turn


def test_a_text_too_long_for_any_page_is_refused_and_cells_without_c_have_none():
    with pytest.raises(RnncliError, match="--page-mb"):
        build_page(synthetic_probe(5_000, 4), [], INFO, max_bytes=50_000)
    meta, units = parse(build_page(model_probe(cell="gru", H=6), [], {**INFO, "cell": "gru"}))
    assert set(meta["states"]) == {"0:h", "1:h"} and {k[1] for k in units} == {"h"}
    probe = model_probe(H=6)
    meta, units = parse(
        build_page(
            Probe(probe.tokens, probe.ids, probe.loss, probe.top_ids, probe.top_p, {}, probe.vocab), [], INFO
        )
    )
    assert meta["total_units"] == 0 and not units


def test_write_page_is_atomic(tmp_path):
    path = tmp_path / "p.html"
    path.write_text("old")
    write_page(path, "<!doctype html>new \u00e9")
    assert path.read_text(encoding="utf-8") == "<!doctype html>new \u00e9" and os.listdir(tmp_path) == [
        "p.html"
    ]
    with pytest.raises(RnncliError, match="cannot write page"):
        write_page(tmp_path / "missing" / "p.html", "x")


def test_the_assets_ship_in_a_wheel(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(root, name), tmp_path)
    shutil.copytree(
        os.path.join(root, "rnncli"), tmp_path / "rnncli", ignore=shutil.ignore_patterns("__pycache__")
    )
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", "dist"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if run.returncode and "No module named pip" in run.stderr:
        pytest.skip("pip is not installed in this environment")
    assert run.returncode == 0, run.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"rnncli/cli/page_assets/page.{ext}" for ext in ("html", "js", "css")} <= names


# ---- in a real browser


@pytest.fixture(scope="module")
def chromium():
    """A Chromium (or Chrome) to run; installed with apt-get where missing and we are root."""
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    find = lambda: next((p for p in map(shutil.which, names) if p), None)  # noqa: E731
    path = find()
    root = getattr(os, "geteuid", lambda: 1)() == 0
    if path is None and root and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for update in (False, True):
            if update:
                subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=600)
            subprocess.run(
                ["apt-get", "install", "-y", "chromium"], capture_output=True, env=env, timeout=900
            )
            if path := find():
                break
    if path is None:
        pytest.skip(
            "no chromium, chromium-browser or google-chrome on PATH, and apt-get could not install one "
            "(it needs root and apt-get)"
        )
    return path


def headless(browser, tmp_path, url, *flags):
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--virtual-time-budget=5000",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        *flags,
        url,
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    return run


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    """A page that keeps about half of its units, so that the selector has some not stored."""
    probe = model_probe(TEXT * 3)
    found, _ = find_neurons(probe.acts, probe.tokens)
    full = build_page(probe, found, INFO)
    page = build_page(probe, found, INFO, max_bytes=len(full.encode()) - len(UNIT.search(full).group(0)) * 48)
    path = tmp_path_factory.mktemp("page") / "inspect.html"
    write_page(path, page)
    return path, page


def test_the_page_works_in_a_browser_and_its_match_agrees_with_match_span(chromium, page_file, tmp_path):
    path, page = page_file
    run = headless(chromium, tmp_path, path.as_uri() + "#selftest", "--dump-dom")
    errors = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not errors, errors
    got = re.search(r'<pre id="selftest"[^>]*>(.*?)</pre>', run.stdout, re.S)
    assert got and got.group(1), "the self-test wrote nothing: " + run.stdout[-1000:]
    result = json.loads(html.unescape(got.group(1)))
    assert result["ok"] and not result["errors"], result
    assert result["recoloured"] > 0 and result["matches"] > 0 and result["highlighted"] > 0, result
    assert "surprise" in result["tooltip"] and "next, as predicted" in result["tooltip"], result["tooltip"]
    meta, units = parse(page)
    kept = re.search(r"this page keeps (\d+) of 96 units", run.stdout)
    assert kept and int(kept.group(1)) == len(units) < 96
    assert "is not stored in this page" in result["not_stored_says"], result
    state = result["unit"].split(":")[1]
    acts = {}
    for layer in range(2):
        cols = sorted(u for (k, s, u) in units if (k, s) == (layer, state))
        acts[(layer, state)] = np.stack([units[(layer, state, u)] for u in cols], axis=1)
    chosen, spans = match_span(acts, state, *result["query"], result["threshold"], limit=10)
    assert len(chosen) == result["units_selected"]
    assert [[m.start, m.end] for m in spans] == result["spans"]


def test_the_page_renders_a_screenshot(chromium, page_file, tmp_path):
    path, _ = page_file
    shot = tmp_path / "shot.png"
    headless(chromium, tmp_path, path.as_uri(), f"--screenshot={shot}", "--window-size=1280,900")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert struct.unpack(">II", data[16:24]) == (1280, 900)
