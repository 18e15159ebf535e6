"""`rnncli bench`: training, scoring and generation speed on named configurations, optionally side by
side with PyTorch (bench_torch.py). Each measurement runs in a fresh process, the two sides taking
turns within every repeat, the first of one repeat last in the next.

Every measurement does a warm-up first (compiling, caches, allocator), reported apart from the timed
runs. Work is the same on both sides: the same model, batch layout (B streams of T tokens, state
carried), loss, global-norm clipping and Adam; generation samples one token at a time, at batch 1
(`generate`) or for 64 samples at once (`generate-batch`, characters counted over all of them).
GFLOP/s count the products each side executes (ModelConfig.macs_per_token), beside the model's
nominal work; both are divided by one BLAS sgemm's rate (matmul_gflops), and generation's weight
traffic by one core's memory bandwidth (memory_gb_per_s).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import numpy as np

from rnncli.model.config import ModelConfig, SampleConfig, TrainConfig


@dataclass(frozen=True)
class BenchConfig:
    name: str
    model: ModelConfig
    batch: int
    seq: int
    gen_chars: int

    def flops_per_token(self, what: str, executed: bool = True) -> float:
        """FLOPs (2 a multiply-add, ModelConfig.macs_per_token) of one token of a measure. executed:
        as rnncli runs it (layer 0's input product by its table, made once a window, or once a model
        when generating); else the model's nominal work."""
        window = (self.batch * self.seq if what in ("train", "eval") else math.inf) if executed else None
        return 2.0 * self.model.macs_per_token(window, training=what == "train")

    def weight_bytes(self, executed: bool = True, fmt: str = "f32") -> int:
        """Bytes of weights read per generated token, the embedding table left out (a token reads one
        row of it); executed: as rnncli reads them, a row of layer 0's (V, G) table for its W_ih,
        and the matrices formats.narrow_names lists in `fmt` (kernels/formats.py), scales included;
        else every weight as float32."""
        from rnncli.kernels import formats

        m = self.model
        nominal = 4 * (m.n_params - m.vocab_size * m.embed)
        if not executed:
            return nominal
        shapes = dict(m.tensor_shapes())
        narrow = [shapes[name] for name in formats.narrow_names(m.layers)]
        return (
            nominal
            - 4 * m.gate_width * (m.embed - 1)
            - sum(4 * N * K - formats.matrix_bytes(N, K, fmt) for N, K in narrow)
        )


def _configs() -> dict[str, BenchConfig]:
    out = {}
    for size, hidden, batch, seq, gen in [("small", 128, 50, 50, 20000), ("medium", 512, 64, 100, 3000)]:
        for cell in ("rnn", "gru", "lstm"):
            m = ModelConfig(vocab_size=65, cell=cell, layers=2, hidden=hidden, embed=64)
            out[f"{size}-{cell}"] = BenchConfig(f"{size}-{cell}", m, batch, seq, gen)
    return out


CONFIGS = _configs()
MEASURES = ("train", "eval", "generate", "generate-batch")
GENERATE = ("generate", "generate-batch")  # batch 1, streaming; BATCH_ROWS samples decoded together
BATCH_ROWS = 64


def _timed(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - t


class Ours:
    """rnncli's side: the library's own model, optimizer and decoder on random tokens."""

    name = "rnncli"

    def __init__(self, cfg: BenchConfig, threads: int | None, device: str = "cpu", weights: str = "f32"):
        from rnncli.kernels.device import backend
        from rnncli.model.model import Model
        from rnncli.model.params import init_params
        from rnncli.model.step import TrainStep

        self.threads, self.K = threads, backend(device)
        rng = np.random.default_rng(0)
        self.cfg = cfg
        self.model = Model(init_params(cfg.model, rng), self.K, weights)  # (generation reads it narrow)
        self.step = TrainStep(self.model, TrainConfig(), cfg.batch)  # (its state carried from step to step)
        V = cfg.model.vocab_size
        self.ids = rng.integers(0, V, (cfg.seq, cfg.batch))
        self.targets = rng.integers(0, V, (cfg.seq, cfg.batch))
        self.h, self.c = self.model.zero_state(cfg.batch)  # (scoring's carried state)

    def use_threads(self):
        """Thread settings as `rnncli train` and `eval` make them (generate leaves them alone)."""
        self.K.use_threads(self.threads)

    def train_step(self):
        self.step(self.ids, self.targets, 2e-3)
        self.K.synchronize()  # (a GPU's launches return at once: the step ends when its work does)

    def eval_step(self):
        self.model.loss(self.ids, self.targets, self.h, self.c)
        self.h, self.c = self.model.final_state(*self.ids.shape)

    def generate(self, n: int, rows: int = 1):
        """n tokens for each of `rows` samples decoded together (1: the streaming case)."""
        from rnncli.run.sample import Decoder

        if rows == 1 and self.K.NAME == "cpu":  # BLAS threads as a fresh `rnncli generate` has them,
            from threadpoolctl import threadpool_limits  # whatever an earlier measure set

            threadpool_limits(self.K.thread_count(self.threads), user_api="blas")
        dec = Decoder(
            self.model,
            SampleConfig(length=n, rng_seed=0),
            streams=range(rows),
            threads=self.threads if rows > 1 else None,  # (streaming leaves threads alone)
        )
        dec.prime([np.array([0])])
        for _ in dec.tokens(n):
            pass


def rates(impl, cfg: BenchConfig, what: str, repeats: int = 1) -> dict:
    """One side's rate at one measure, tokens (or characters) a second: a warm-up, then `repeats`
    timed runs of about a second; their median, the runs and the warm-up's seconds."""
    tokens = cfg.batch * cfg.seq
    if what not in GENERATE and hasattr(impl, "use_threads"):
        impl.use_threads()
    if what in GENERATE:
        rows, n = (1, cfg.gen_chars) if what == "generate" else (BATCH_ROWS, cfg.gen_chars // 8)
        warm = _timed(lambda: impl.generate(50, rows), 1)
        runs = [rows * n / _timed(lambda: impl.generate(n, rows), 1) for _ in range(repeats)]
    else:
        step = impl.train_step if what == "train" else impl.eval_step
        warm = _timed(step, 2)
        n = max(3, int(1.0 / max(_timed(step, 1), 1e-4)))  # about a second a run
        runs = [n * tokens / _timed(step, n) for _ in range(repeats)]
    return {"rate": statistics.median(runs), "runs": runs, "warmup_s": warm}


def matmul_gflops(threads: int | None, device: str = "cpu") -> float:
    """The one yardstick for both sides' GFLOP/s: the float32 product of 1024-square matrices by
    one BLAS sgemm (NumPy's OpenBLAS, the BLAS rnncli's kernels call, on `threads` threads) on the
    CPU, by the kernels' own product on a GPU; best of three runs of ten."""
    n, reps = 1024, 10
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    if device == "cpu":
        import os

        from threadpoolctl import threadpool_limits

        out = np.empty_like(a)
        with threadpool_limits(threads or os.cpu_count(), user_api="blas"):
            np.matmul(a, a, out=out)
            seconds = min(_timed(lambda: np.matmul(a, a, out=out), reps) for _ in range(3))
        return 2.0 * n**3 * reps / seconds / 1e9
    from rnncli.kernels.device import backend

    K = backend(device)
    a, out = K.asarray(a), K.empty((n, n))

    def product():
        K.matmul(a, a, None, out)
        K.synchronize()

    product()
    return 2.0 * n**3 * reps / min(_timed(product, reps) for _ in range(3)) / 1e9


def memory_gb_per_s(mib: int = 256) -> float:
    """One core's memory bandwidth: the bytes read and written by a NumPy copy of an array far
    larger than the caches, best of three. Generation at batch 1 reads every weight once a
    character, so this over the bytes it reads is the characters a second memory allows."""
    src = np.ones(mib << 18, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    return 2 * src.nbytes / min(_timed(lambda: np.copyto(dst, src), 1) for _ in range(3)) / 1e9


def expand(names: list[str]) -> list[str]:
    """Configuration names from arguments that may also say small, medium or all."""
    out = []
    for name in names or ["all"]:
        picked = [c for c in CONFIGS if name in ("all", c, c.split("-")[0], c.split("-")[1])]
        if not picked:
            from rnncli.base.errors import RnncliError

            raise RnncliError(
                f"unknown --config {name!r}: choose from all, small, medium, {', '.join(CONFIGS)}"
            )
        out += [c for c in picked if c not in out]
    return out


def _child(
    impl: str,
    name: str,
    measures: list[str],
    threads: int | None,
    device: str,
    tune: bool = True,
    weights: str = "f32",
) -> list[dict]:
    """One implementation on one configuration, in a fresh process: two libraries' OpenMP pools in
    one process slow each other down (seen: PyTorch's small RNN 20x slower after a Numba kernel)."""
    import json
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "rnncli.run.bench",
        impl,
        name,
        ",".join(measures),
        str(threads or 0),
        device,
        str(int(tune)),
        weights,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        from rnncli.base.errors import RnncliError

        lines = (done.stderr.strip() or "no output").splitlines()
        raise RnncliError(f"the {impl} benchmark of {name} failed: {lines[-1]}")
    return json.loads(done.stdout)


def run(
    names: list[str],
    what: list[str],
    repeats: int,
    threads: int | None,
    against_torch: bool,
    device: str = "cpu",
    tune: bool = True,
    weights: str = "f32",
):
    """Yield one result dict per (config, measurement, implementation). Each repeat runs every
    implementation in turn, so that both see the same machine state, the first in one repeat last
    in the next; rates are medians, and rnncli's rows carry `ratio`, the median over repeats of
    rnncli's rate / PyTorch's. gflops: the work each side executes (rnncli's layer 0 by its
    table); gflops_nominal: the model's; weight_gb_per_s: the weight bytes each side reads a
    character, a second (rnncli's generation in the format `weights`; PyTorch's in float32)."""
    impls = ["rnncli"] + (["torch"] if against_torch else [])
    for name in names:
        cfg = CONFIGS[name]
        found: dict[tuple[str, str], list[dict]] = {}
        for i in range(repeats):
            order = impls if i % 2 == 0 else impls[::-1]  # each side goes first in every other repeat
            for w in what:  # each measurement in a fresh process, set up as its command sets up
                for impl in order:
                    for r in _child(impl, name, [w], threads, device, tune, weights):
                        found.setdefault((impl, r["measure"]), []).append(r)
        for w in what:
            for impl in impls:
                rs = found[(impl, w)]
                rate = statistics.median(r["rate"] for r in rs)
                executed = impl == "rnncli"  # (PyTorch runs the model's products as written)
                read = cfg.weight_bytes(executed, weights if executed else "f32")
                row = {
                    "config": name,
                    "measure": w,
                    "impl": impl,
                    "rate": rate,
                    "runs": [r["rate"] for r in rs],
                    "warmup_s": rs[0]["warmup_s"],
                    "gflops": rate * cfg.flops_per_token(w, executed) / 1e9,
                    "gflops_nominal": rate * cfg.flops_per_token(w, False) / 1e9,
                    "weight_gb_per_s": rate * read / 1e9 if w == "generate" else None,
                    "weights": weights if executed and w in GENERATE else "f32",
                }
                if impl == "rnncli" and against_torch:
                    # each repeat's two runs are neighbours in time: their ratio is less exposed to
                    # the machine's slow spells than a ratio of two medians
                    pairs = zip(row["runs"], (r["rate"] for r in found[("torch", w)]))
                    row["ratio"] = statistics.median(ours / theirs for ours, theirs in pairs)
                yield row


if __name__ == "__main__":
    import json
    import sys

    from rnncli.kernels.cpu import tune as tuning

    impl_name, config_name, measures, n_threads = sys.argv[1:5]
    device_name = sys.argv[5] if len(sys.argv) > 5 else "cpu"
    fmt_name = sys.argv[7] if len(sys.argv) > 7 else "f32"
    if impl_name == "torch":
        from rnncli.run.bench_torch import Theirs as Impl
    else:
        Impl = Ours
    bench_cfg = CONFIGS[config_name]
    with tuning.configured(len(sys.argv) <= 6 or sys.argv[6] == "1"):  # (the parent's --no-tune)
        side = Impl(bench_cfg, int(n_threads) or None, device_name, *([fmt_name] if Impl is Ours else []))
        print(json.dumps([dict(rates(side, bench_cfg, m), measure=m) for m in measures.split(",")]))
