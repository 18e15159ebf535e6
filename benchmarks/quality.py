"""What a time budget buys: run `rnncli train CORPUS --time SECONDS` and print the best validation
loss at each minute, the recipe and the machine.

    python benchmarks/quality.py CORPUS [CORPUS ...] [--time 600] [--recipe auto] [--recipe plain]
                                 [--seed 0 --seed 1] [--keep DIR] [--json]
    python benchmarks/quality.py --make-stdlib-corpus stdlib.txt   # a 1.5 MB real text: Python's own sources

Each (corpus, seed, recipe) is one `rnncli train --rng-seed SEED` run in a fresh process, one after
another (two runs at once on a 2-core machine would each get half of it); the recipes take turns
going first from one seed to the next. The kernels are compiled before the first timed run, so no
run's budget pays for it. The best validation loss is in nats per token; `--time` counts training
and validation, not compiling (rnncli's own rule). With several seeds, a last table gives each
(corpus, recipe)'s mean best loss and its spread (the largest less the smallest). `--keep DIR`
keeps the models (named corpus-recipe-seed.safetensors). Extra arguments after `--` go to every
`rnncli train`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from rnncli.base.machine import cpu_description


def run(corpus: str, seconds: float, recipe: str, seed: int, extra: list[str], workdir: str) -> dict:
    """One timed run: the recipe, the validations (elapsed seconds, step, loss) and the end."""
    out = os.path.join(workdir, f"{Path(corpus).stem}-{recipe}-{seed}.safetensors")
    argv = [
        sys.executable,
        "-m",
        "rnncli",
        "train",
        corpus,
        "--time",
        str(seconds),
        "--recipe",
        recipe,
        "--out",
        out,
        "--json",
        "--rng-seed",
        str(seed),
        *extra,
    ]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"quality.py: {' '.join(argv)} failed: {done.stderr.strip().splitlines()[-1:]}")
    events = [json.loads(line) for line in done.stdout.splitlines()]
    vals = [(e["elapsed_s"], e["step"], e["val_loss"]) for e in events if e.get("val_loss") is not None]
    end = events[-1]
    first = events[0] if events[0]["event"] == "recipe" else None
    return {
        "corpus": corpus,
        "recipe": recipe,
        "seed": seed,
        "time": seconds,
        "best_val_loss": end["best_val_loss"],
        "best_step": end["best_step"],
        "steps": end["step"],
        "early_stop": end["early_stop"],
        "train_s": end["train_s"],
        "tokens_seen": end["tokens_seen"],
        "validations": vals,
        "chosen": first and {"model": first["model"], "train": first["train"], "why": first["why"]},
    }


def per_minute(validations: list, seconds: float) -> list[tuple[int, float | None]]:
    """(minute, best validation loss by then) for each whole minute of the budget, and the end."""
    marks = list(range(60, int(seconds) + 1, 60)) or [int(seconds)]
    return [(m // 60, min((v for t, _, v in validations if t <= m + 1), default=None)) for m in marks]


def make_stdlib_corpus(path: str, size: int = 1_500_000) -> None:
    """Python's standard library sources (from the running interpreter), whole files in name order,
    until `size` bytes: a public, real, non-English text that every machine with Python has."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for source in sorted(root.glob("*.py")):
        text = source.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        total += len(text.encode())
        if total >= size:
            break
    Path(path).write_text("".join(parts), encoding="utf-8")
    print(f"wrote {path}: {total:,} bytes from {len(parts)} files of {root}", file=sys.stderr)


def summary(results: list[dict]) -> list[str]:
    """A line per (corpus, recipe): the mean best validation loss over its seeds, the spread (largest
    less smallest), each seed's loss and steps, and the model the recipe chose."""
    lines = []
    for key in dict.fromkeys((r["corpus"], r["recipe"]) for r in results):
        runs = [r for r in results if (r["corpus"], r["recipe"]) == key]
        losses = [r["best_val_loss"] for r in runs]
        chosen = runs[0]["chosen"]
        model = chosen and "{cell} {layers}x{hidden}, dropout {dropout:g}".format(**chosen["model"])
        lines.append(
            f"{key[0]} --recipe {key[1]}: mean {statistics.fmean(losses):.4f}, spread "
            f"{max(losses) - min(losses):.4f} over {len(runs)} seed(s) ("
            + ", ".join(f"seed {r['seed']}: {r['best_val_loss']:.4f} in {r['steps']} steps" for r in runs)
            + ")"
            + (f"; {model}" if model else "")
        )
    return lines


def report(result: dict, seconds: float) -> None:
    """One run's lines: its best loss, what the recipe chose and the best loss by minute."""
    chosen = result["chosen"]
    print(
        f"{result['corpus']} --recipe {result['recipe']} --rng-seed {result['seed']} --time {seconds:g}: "
        f"best validation loss {result['best_val_loss']:.4f} at step {result['best_step']} of "
        f"{result['steps']}" + (" (stopped early)" if result["early_stop"] else "")
    )
    if chosen:
        m = chosen["model"]
        print(
            f"  chose {m['cell']} {m['layers']}x{m['hidden']}, dropout {m['dropout']:g}, batch "
            f"{chosen['train']['batch']}x{chosen['train']['seq']}; {chosen['why']}"
        )
    marks = per_minute(result["validations"], seconds)
    best = ", ".join(f"{m}: {'-' if v is None else format(v, '.3f')}" for m, v in marks)
    print(f"  best by minute: {best}", flush=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", nargs="*")
    ap.add_argument("--time", type=float, default=600.0)
    ap.add_argument("--recipe", action="append", choices=("auto", "plain"))
    ap.add_argument("--seed", type=int, action="append", help="--rng-seed of the runs (repeat it; default 0)")
    ap.add_argument("--keep", metavar="DIR", help="keep the trained models in DIR")
    ap.add_argument("--json", action="store_true", help="one JSON object per run on stdout")
    ap.add_argument("--make-stdlib-corpus", metavar="PATH")
    args = ap.parse_args(argv)
    if args.make_stdlib_corpus:
        make_stdlib_corpus(args.make_stdlib_corpus)
        return
    if not args.corpus:
        ap.error("give a corpus")
    cpu, width = cpu_description()
    print(
        f"quality.py: {cpu}, {width} float32 lanes, {os.cpu_count()} cores; --time {args.time:g}",
        file=sys.stderr,
    )
    recipes, seeds, results = args.recipe or ["auto"], args.seed or [0], []
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.keep or scratch
        os.makedirs(workdir, exist_ok=True)
        # compiles, if needed
        subprocess.run(
            [
                sys.executable,
                "-m",
                "rnncli",
                "train",
                args.corpus[0],
                "--recipe",
                "plain",
                "--steps",
                "1",
                "--out",
                os.path.join(scratch, "warm.safetensors"),
            ],
            capture_output=True,
        )
        for corpus in args.corpus:
            for turn, seed in enumerate(seeds):
                for recipe in recipes[::-1] if turn % 2 else recipes:
                    result = run(corpus, args.time, recipe, seed, extra, workdir)
                    results.append(result)
                    if args.json:
                        print(json.dumps(dict(result, cpu=cpu)), flush=True)
                    else:
                        report(result, args.time)
    if not args.json and len(results) > 1:
        print("\n".join(["", f"mean and spread, --time {args.time:g}:", *summary(results)]))


if __name__ == "__main__":
    main()
