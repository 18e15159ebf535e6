"""Streaming tokenization of a 1 GB corpus (rnncli/data/corpus.py): cold build speed and peak memory,
then a cache hit, for char, byte and word, each in a fresh child process. Not a test: it prints a
table against the issue's targets.

    .venv/bin/python benchmarks/tokenize_big.py [--folder /tmp] [--mb 1000] [--kinds char,byte,word]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHAKESPEARE = Path("/work/shared/data/tinyshakespeare.txt")
EXTRA = [
    "Ça va? Señor Müller écrit «naïve café» — déjà vu, über-schön.",
    "東京タワーの夜景 と 富士山, 1234 ٣٤٥ ½ × ² ≠ ∞.",
    "Ἐν ἀρχῇ ἦν ὁ λόγος — Съешь же ещё этих мягких булок 😀🎭.",
]
TARGETS = {"char": 100, "byte": 100, "word": 20}  # MB/s, cold
CHILD = """
import json, resource, sys, time
t = time.perf_counter()
from rnncli.data.corpus import load_corpus
c = load_corpus([sys.argv[1]], sys.argv[2], 20000)
s = time.perf_counter() - t
print(json.dumps({"hit": c.hit, "tokens": len(c.ids), "vocab": len(c.tokenizer), "missing": len(c.missing),
                  "seconds": s, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def make_corpus(path: Path, size: int, seed: int = 0) -> None:
    """tinyshakespeare again and again until `size` bytes, each copy with a few words swapped and a few
    non-ASCII lines put in (so that not every piece takes the ASCII path)."""
    rng = random.Random(seed)
    lines = SHAKESPEARE.read_text().split("\n")
    words = [(i, line.split(" ")) for i, line in enumerate(lines) if line.count(" ") >= 2]
    tmp = path.with_suffix(".part")
    with open(tmp, "w", encoding="utf-8") as f:
        written = 0
        while written < size:
            copy = list(lines)
            for _ in range(20):  # a few swapped words
                i, ws = rng.choice(words)
                ws = list(ws)
                a, b = rng.sample(range(len(ws)), 2)
                ws[a], ws[b] = ws[b], ws[a]
                copy[i] = " ".join(ws)
            for _ in range(8):  # a few lines of other scripts
                copy.insert(rng.randrange(len(copy)), rng.choice(EXTRA))
            text = "\n".join(copy)[: size - written] + "\n"
            f.write(text)
            written += len(text.encode())
    os.replace(tmp, path)


def child(path: Path, kind: str, cache: Path) -> dict:
    env = dict(os.environ, RNNCLI_CACHE_DIR=str(cache))
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), kind], env=env, check=True, capture_output=True, text=True
    ).stdout
    return dict(json.loads(out), wall=time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", default="/tmp")
    ap.add_argument("--mb", type=int, default=1000, help="corpus size in MB (10^6 bytes)")
    ap.add_argument("--kinds", default="char,byte,word")
    args = ap.parse_args()
    folder = Path(args.folder)
    path = folder / f"rnncli-bench-{args.mb}mb.txt"
    if not path.exists() or path.stat().st_size < args.mb * 10**6:
        t = time.perf_counter()
        make_corpus(path, args.mb * 10**6)
        print(f"wrote {path} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    size = path.stat().st_size
    print(f"{path}: {size / 1e6:.0f} MB; the file is in the page cache (it was just written or read)")
    print(
        f"{'kind':5} {'tokens':>11} {'vocab':>6} {'cold s':>7} {'MB/s':>6} {'target':>6} {'RSS MB':>7} "
        f"{'hit s':>6} {'hit wall':>8} {'hit RSS':>7}"
    )
    for kind in args.kinds.split(","):
        cache = folder / f"rnncli-bench-cache-{kind}"
        shutil.rmtree(cache, ignore_errors=True)
        cold = child(path, kind, cache)
        hit = child(path, kind, cache)
        assert not cold["hit"] and hit["hit"] and hit["tokens"] == cold["tokens"]
        rate = size / 1e6 / cold["seconds"]
        from rnncli.data.word_split import workers_for

        # the word pass's processes: each counted at the largest's peak
        workers = workers_for(size) if kind == "word" else 0
        cold["rss_mb"] += workers * cold["worker_rss_mb"]
        print(
            f"{kind:5} {cold['tokens']:>11} {cold['vocab']:>6} {cold['seconds']:>7.1f} {rate:>6.0f} "
            f"{TARGETS[kind]:>6} {cold['rss_mb']:>7.0f} {hit['seconds']:>6.2f} {hit['wall']:>8.2f} "
            f"{hit['rss_mb']:>7.0f}",
            flush=True,
        )
        shutil.rmtree(cache, ignore_errors=True)
    print(
        "targets: char and byte >= 100 MB/s, word >= 20 MB/s, peak RSS < 600 MB, hit < 2 s "
        "(seconds inside the child; hit wall includes starting Python; word's RSS adds its worker processes)"
    )


if __name__ == "__main__":
    main()
