"""Data-parallel training: 2 ranks x 1 thread against 1 rank x 2 threads on this machine (same global
batch), and a paper model of the scaling to 2..64 nodes with ring all-reduce.

    python benchmarks/distributed_scale.py [--corpus FILE] [--steps 30] [--repeats 3] [--config medium-lstm]

Runs `rnncli train` (needs `pip install -e ".[mpi]"`), alternating the two layouts, and prints the
median training rate of each, their ratio, then the model: per step every rank all-reduces the
gradients (4 bytes x parameters); a ring all-reduce moves 2 (N-1)/N of that over each link and
takes 2 (N-1) latency hops; with no overlap of exchange and compute, efficiency = compute /
(compute + exchange). Weak scaling: each node keeps the batch measured here (global batch N x B).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from rnncli.run.bench import CONFIGS

LINKS_GBIT = (10, 25, 100)
NODES = (2, 4, 8, 16, 32, 64)
LATENCY_S = 20e-6  # per hop on an ordinary Ethernet cluster (TCP); InfiniBand is ~2 us


def ring_seconds(nbytes: float, nodes: int, gbit: float) -> float:
    return 2 * (nodes - 1) / nodes * nbytes / (gbit * 1e9 / 8) + 2 * (nodes - 1) * LATENCY_S


def train_rate(corpus: str, cfg, steps: int, ranks: int, threads: int, workdir: str) -> tuple[float, float]:
    """(tokens per second, seconds per step) of the run's steps, validation and saving left out."""
    m = cfg.model
    argv = [
        sys.executable,
        "-m",
        "rnncli",
        "train",
        corpus,
        "--cell",
        m.cell,
        "--layers",
        str(m.layers),
        "--hidden",
        str(m.hidden),
        "--embed",
        str(m.embed),
        "--batch",
        str(cfg.batch),
        "--seq",
        str(cfg.seq),
        "--steps",
        str(steps),
        "--eval-every",
        str(10 * steps),
        "--val-frac",
        "0",
        "--threads",
        str(threads),
        "--out",
        os.path.join(workdir, f"r{ranks}.st"),
        "--json",
    ]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or "mpiexec"
        argv = [mpiexec, "-n", str(ranks)] + argv
    else:
        argv.append("--no-distributed")
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    steps_ev = [e for e in events if e["event"] == "step"][1:]  # the first may compile
    tokens = cfg.batch * cfg.seq
    seconds = [tokens / e["tokens_per_s"] for e in steps_ev if e["tokens_per_s"]]
    per_step = statistics.median(seconds)
    return tokens / per_step, per_step


def measure(corpus: str, name: str, steps: int, repeats: int) -> float:
    """Print the side-by-side rates of one config; return its compute seconds per step (1 x 2)."""
    cfg = CONFIGS[name]
    one, two, step_s = [], [], []
    with tempfile.TemporaryDirectory() as work:
        for r in range(repeats):
            rate1, s1 = train_rate(corpus, cfg, steps, 1, 2, work)
            rate2, _ = train_rate(corpus, cfg, steps, 2, 1, work)
            one.append(rate1), two.append(rate2), step_s.append(s1)
            print(
                f"{name} repeat {r + 1}: 1 rank x 2 threads {rate1:,.0f} tok/s, 2 ranks x 1 thread "
                f"{rate2:,.0f} tok/s, ratio {rate2 / rate1:.3f}",
                file=sys.stderr,
            )
    ratios = sorted(b / a for a, b in zip(one, two))
    print(f"{name}, batch {cfg.batch} x seq {cfg.seq}, {steps} steps x {repeats}:")
    print(f"  1 rank x 2 threads  {statistics.median(one):10,.0f} tokens/s")
    print(
        f"  2 ranks x 1 thread  {statistics.median(two):10,.0f} tokens/s   ratio (median of pairs) "
        f"{statistics.median(ratios):.3f}  [{ratios[0]:.3f} .. {ratios[-1]:.3f}]"
    )
    return statistics.median(step_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--corpus",
        default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "tinyshakespeare.txt"),
    )
    ap.add_argument("--config", nargs="+", default=["small-lstm", "medium-lstm"])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not os.path.exists(args.corpus):
        args.corpus = os.path.join(os.path.dirname(__file__), "..", "sample_corpora", "dialogues.txt")
    compute = {name: measure(args.corpus, name, args.steps, args.repeats) for name in args.config}
    print()
    print("paper model, weak scaling (each node: this machine, this batch), ring all-reduce, no overlap:")
    for name, step in compute.items():
        c = CONFIGS[name]
        nbytes = 4 * c.model.n_params
        print(
            f"  {name}: {c.model.n_params:,} parameters, {nbytes / 1e6:.1f} MB all-reduced per step, "
            f"compute {step * 1e3:.0f} ms per step"
        )
        print("    nodes   " + "".join(f"{n:>8}" for n in NODES))
        for gbit in LINKS_GBIT:
            eff = [step / (step + ring_seconds(nbytes, n, gbit)) for n in NODES]
            print(f"    {gbit:>3} Gb/s " + "".join(f"{e:8.3f}" for e in eff))


if __name__ == "__main__":
    main()
