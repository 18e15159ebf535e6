"""Train the same model for N steps on the CPU and on the GPU, from the same seed, and compare the
losses step by step (issue: within 1e-3 for each cell after 100 steps). Prints one JSON line per
cell and exits 1 if any differs by more than --tol.

    python benchmarks/gpu_vs_cpu.py --steps 100 [--corpus sample_corpora/dialogues.txt]
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/gpu_vs_cpu.py --steps 2 --hidden 6 --embed 3 --batch 2 --seq 4 \
        --val-frac 0                                            # (a smoke test of this script, simulated)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from rnncli.run.train import Trainer

ROOT = Path(__file__).resolve().parent.parent


def losses(args, cell: str, device: str, out: str) -> tuple[list[float], float]:
    model = {"cell": cell, "layers": 2, "hidden": args.hidden, "embed": args.embed}
    train = {
        "steps": args.steps,
        "batch": args.batch,
        "seq": args.seq,
        "eval_every": args.steps,
        "out": out,
        "device": device,
        "val_frac": args.val_frac,
    }
    with Trainer([args.corpus], model, train) as trainer:
        t0 = time.perf_counter()
        found = [e["train_loss"] for e in trainer.run() if e["event"] == "step"]
        return found, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--corpus", default=str(ROOT / "sample_corpora" / "dialogues.txt"))
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--hidden", type=int, default=128)  # the small configuration, unless a smoke test
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--seq", type=int, default=50)
    ap.add_argument("--val-frac", type=float, default=0.05)
    args = ap.parse_args()
    worst_all = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for cell in ("rnn", "gru", "lstm"):
            cpu, cpu_s = losses(args, cell, "cpu", f"{tmp}/{cell}-cpu.safetensors")
            gpu, gpu_s = losses(args, cell, "cuda", f"{tmp}/{cell}-gpu.safetensors")
            worst = max(abs(a - b) for a, b in zip(cpu, gpu))
            worst_all = max(worst_all, worst)
            print(
                json.dumps(
                    {
                        "cell": cell,
                        "steps": args.steps,
                        "max_abs_diff": worst,
                        "cpu_last": cpu[-1],
                        "gpu_last": gpu[-1],
                        "cpu_s": round(cpu_s, 2),
                        "gpu_s": round(gpu_s, 2),
                    }
                ),
                flush=True,
            )
    return 0 if worst_all <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
