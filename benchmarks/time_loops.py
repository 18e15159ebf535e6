"""One layer's time loops (forward, then backward) by two recurrent-product paths, taking turns in one
process: the paired measurement that a 2-core machine's run-to-run spread leaves for comparing paths
(whole `rnncli bench` runs of the same code moved by 0.85-1.18x there).

    python benchmarks/time_loops.py lstm 128 50 50 packed blas          # cell H batch steps path path
    python benchmarks/time_loops.py gru 512 64 100 packed blas --columns # the column split (large W_hh)

Each turn runs the loops for about --seconds; the sides alternate which goes first. Prints each
side's median milliseconds a forward + backward and the median (quartiles) of the pairs' ratios.
The paths are gemm.PATHS; with --columns only blas and packed exist.
"""

import argparse
import statistics
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cell", choices=["rnn", "gru", "lstm"])
    ap.add_argument("hidden", type=int)
    ap.add_argument("batch", type=int)
    ap.add_argument("steps", type=int)
    ap.add_argument("first")
    ap.add_argument("second")
    ap.add_argument("--columns", action="store_true", help="share each step by columns of W_hh")
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=0.25)
    args = ap.parse_args()

    from rnncli.base.machine import cpu_description
    from rnncli.kernels.cpu import backend as cpu
    from rnncli.kernels.cpu import gemm, tune
    from rnncli.model.config import ModelConfig

    cpu.use_threads(None)
    c = ModelConfig(cell=args.cell, hidden=args.hidden, layers=1, embed=64, vocab_size=65)
    T, B, H, G, A, C = args.steps, args.batch, c.hidden, c.gate_width, c.act_width, c.cstate_width
    rng = np.random.default_rng(0)
    W_hh, b_hh = (rng.standard_normal((G, H)) * 0.05).astype(np.float32), np.zeros(G, np.float32)
    gx = (rng.standard_normal((T, B, G)) * 0.5).astype(np.float32)
    hs, cs, act = (
        np.zeros((T + 1, B, H), np.float32),
        np.zeros((T + 1, B, C), np.float32),
        np.zeros((T, B, A), np.float32),
    )
    dhs = (rng.standard_normal((T, B, H)) * 0.1).astype(np.float32)
    dh, dc, tmp, gh = (
        np.zeros((B, H), np.float32),
        np.zeros((B, C), np.float32),
        np.zeros((B, H), np.float32),
        np.zeros((B, G), np.float32),
    )
    dgx = np.zeros((T, B, G), np.float32)
    dgh = np.zeros((T, B, G), np.float32) if args.cell == "gru" else dgx
    scratch = cpu.Scratch()
    cpu._by_columns = lambda rows, W: args.columns

    def run(name):
        """Seconds a forward + backward with every product by `name`."""
        chosen = gemm.PATHS.index(name)
        tune.path = lambda *a, **k: chosen
        t, n = time.perf_counter(), 0
        while time.perf_counter() - t < args.seconds:
            cpu.sequence_forward(scratch, 0, c.cell_code, gx, W_hh, b_hh, hs, cs, act, gh)
            dh[:], dc[:] = 0.0, 0.0
            cpu.sequence_backward(scratch, 0, c.cell_code, W_hh, hs, cs, act, dhs, dh, dc, dgx, dgh, tmp)
            n += 1
        return (time.perf_counter() - t) / n

    run(args.first), run(args.second)  # (compiles, if the kernel cache is cold)
    times = {args.first: [], args.second: []}
    for i in range(args.pairs):
        for name in (args.first, args.second)[:: 1 if i % 2 == 0 else -1]:
            times[name].append(run(name))
    ratios = [b / a for a, b in zip(times[args.first], times[args.second])]
    q1, _, q3 = statistics.quantiles(ratios)
    split = "columns" if args.columns else "batch"
    print(
        f"{cpu_description()[0]}, {cpu.threads()} threads; {args.cell} {H}, {B} x {T}, {split} split: "
        f"{args.first} {statistics.median(times[args.first]) * 1e3:.2f} ms, "
        f"{args.second} {statistics.median(times[args.second]) * 1e3:.2f} ms; "
        f"{args.second} / {args.first} {statistics.median(ratios):.3f} ({q1:.3f}-{q3:.3f})"
    )


if __name__ == "__main__":
    main()
