"""What the `inspect --html` page costs: its size, the time to build it and the time headless
Chromium takes to open it (the page's own #selftest ready_ms, and the browser process's wall time).

    python benchmarks/inspect_page.py [CHECKPOINT] [--kb 100] [--repeats 3] [--screenshot PATH [--fragment F]]

Without a checkpoint: a randomly initialised 2x512 LSTM over the first --kb kB of tinyshakespeare
(synthetic text when the corpus is missing). --fragment picks what the screenshot shows, as the
page's URL fragment does (e.g. "unit=1:c:37", "view=activation"); by default the first found unit.
"""

import argparse
import html
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rnncli.cli.page import build_page, write_page
from rnncli.data.text import Tokenizer, text_for
from rnncli.model.config import ModelConfig, TrainConfig
from rnncli.model.model import Model
from rnncli.model.params import init_params
from rnncli.run.neurons import find_neurons
from rnncli.run.probe import probe_text
from rnncli.store.load import load_model

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"


def text_of(kb: int) -> bytes:
    if CORPUS.exists():
        return CORPUS.read_bytes()[: kb * 1000].decode("utf-8", "ignore").encode()  # whole characters
    rng = np.random.default_rng(0)
    words = ["the", "king", "shall", "not", '"come"', "(here)", "and", "1599", "Romeo", "love", "night"]
    lines = (" ".join(rng.choice(words, rng.integers(3, 12))) + "\n" for _ in range(kb * 100))
    return "".join(lines).encode()[: kb * 1000]


def loaded_model(checkpoint, raw: bytes):
    """(model, tokenizer, meta) from a checkpoint, or a random 2x512 LSTM over the text's characters."""
    if checkpoint:
        return load_model(checkpoint, "cpu")
    tok = Tokenizer.build("char", raw.decode("utf-8", "replace"))
    cfg = ModelConfig(vocab_size=len(tok.vocab), cell="lstm", layers=2, hidden=512, embed=64)
    return Model(init_params(cfg, np.random.default_rng(0))), tok, {"train": TrainConfig(), "model": cfg}


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    sys.exit("no chromium, chromium-browser or google-chrome on PATH")


def open_page(browser: str, url: str, profile: str, *flags) -> tuple[float, str]:
    """Wall seconds of one headless run, and what it printed."""
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--virtual-time-budget=5000",
        f"--user-data-dir={profile}",
        *flags,
        url,
    ]
    t = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return time.perf_counter() - t, run.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--kb", type=int, default=100, help="kB of text")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--page-mb", type=float, default=20.0)
    ap.add_argument("--screenshot", help="write a 1280x900 PNG of the page here")
    ap.add_argument("--fragment", help="URL fragment for the screenshot (default: the first found unit)")
    ap.add_argument("--keep", help="keep the page at this path")
    args = ap.parse_args()

    raw = text_of(args.kb)
    loaded = loaded_model(args.checkpoint, raw)
    model, tok, meta = loaded
    cfg = meta["model"]
    states = [(k, s) for k in range(cfg.layers) for s in "hc" if s == "h" or cfg.cell == "lstm"]
    t = time.perf_counter()
    probe = probe_text(text_for(tok.kind, raw), loaded, top_k=5, states=states)
    probe_s = time.perf_counter() - t
    t = time.perf_counter()
    found, absent = find_neurons(probe.acts, probe.tokens)
    find_s = time.perf_counter() - t
    info = {
        "title": CORPUS.name if CORPUS.exists() else "synthetic.txt",
        "cell": cfg.cell,
        "layers": cfg.layers,
        "hidden": cfg.hidden,
        "tokenizer": tok.kind,
        "absent": absent,
    }
    builds, page = [], None
    for _ in range(args.repeats):
        t = time.perf_counter()
        page = build_page(probe, found, info, max_bytes=int(args.page_mb * 1e6))
        builds.append(time.perf_counter() - t)
    kept = re.search(r"this page keeps (\d+) of (\d+) units", page)
    print(
        f"text {len(raw):,} bytes, {probe.n:,} tokens; model {cfg.cell} {cfg.layers}x{cfg.hidden}"
        f"{' (random init)' if not args.checkpoint else ''}; probe {probe_s:.1f} s, "
        f"find_neurons {find_s:.1f} s"
    )
    print(
        f"page {len(page.encode()):,} bytes, "
        f"{kept.group(1) + ' of ' + kept.group(2) if kept else 'all'} units kept; "
        f"build median {statistics.median(builds):.2f} s ({', '.join(f'{b:.2f}' for b in builds)})"
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep or os.path.join(tmp, "inspect.html")).resolve()
        write_page(path, page)
        browser, ready, walls = chromium(), [], []
        for r in range(args.repeats):
            wall, dom = open_page(
                browser, path.as_uri() + "#selftest", os.path.join(tmp, f"profile{r}"), "--dump-dom"
            )
            got = re.search(r'<pre id="selftest"[^>]*>(.*?)</pre>', dom, re.S)
            result = json.loads(html.unescape(got.group(1))) if got and got.group(1) else {"ok": False}
            if not result.get("ok"):
                print(f"  self-test did not pass: {result}")
            ready.append(result.get("ready_ms") or float("nan"))
            walls.append(wall)
        print(
            f"chromium: ready_ms median {statistics.median(ready):.0f} "
            f"({', '.join(f'{x:.0f}' for x in ready)}); "
            f"process wall median {statistics.median(walls):.2f} s ({', '.join(f'{w:.2f}' for w in walls)}) "
            f"[headless start, load, #selftest, DOM dump]"
        )
        if args.screenshot:
            fragment = args.fragment
            if fragment is None and found:
                fragment = f"unit={found[0].layer}:{found[0].state}:{found[0].unit}"
            url = path.as_uri() + (f"#{fragment}" if fragment else "")
            shot = Path(args.screenshot).resolve()
            wall, _ = open_page(
                browser, url, os.path.join(tmp, "shot"), f"--screenshot={shot}", "--window-size=1280,900"
            )
            print(f"screenshot {shot} ({shot.stat().st_size:,} bytes, {wall:.2f} s)")


if __name__ == "__main__":
    main()
