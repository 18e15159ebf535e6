"""What people see of generate, eval and bench (and the first-run compile notice every command shares)."""

from __future__ import annotations

import json
import sys

from rich.console import Console


def notice_compiling(kernel_name: str) -> None:
    """Say on stderr that this run compiles the kernels, when they are not in the disk cache yet."""
    from rnncli.kernels.jit import compiled_on_disk

    if not compiled_on_disk(kernel_name):
        say_compiling()


def say_compiling() -> None:
    print(
        "rnncli: compiling the kernels and timing them on this CPU (first run only: later runs load them)...",
        file=sys.stderr,
        flush=True,
    )


def run_eval(model, sources: list[str], held_out: bool, json_out: bool, on_warning) -> None:
    """Run `rnncli eval` with a loaded api.Model: a line per file (its name first when there are
    several) and the total; with --held-out, the model's validation split of its corpus."""
    from rnncli.run.evaluate import Score

    notice_compiling("sequence_forward")
    if held_out:
        scores, names = [model.score_held_out(sources)], ["held-out"]
    else:
        scores, names = model.score_files(sources, on_warning), list(sources)
    total = Score.total(scores) if len(scores) > 1 else scores[0]
    if json_out:
        extra = (
            {"files": [dict(s.to_json(), file=n) for n, s in zip(names, scores)]} if len(scores) > 1 else {}
        )
        print(json.dumps({**total.to_json(), **({"held_out": True} if held_out else {}), **extra}))
        return
    line = lambda s: (
        f"nats/token {s.nats_per_token:.4f}  bits/char {s.bits_per_char:.4f}  "  # noqa: E731
        f"perplexity {s.perplexity:.3f}  tokens {s.tokens}"
    )
    if len(scores) == 1:
        print(line(total) + ("  (held-out split)" if held_out else ""))
        return
    width = max(len(n) for n in names + ["total"])
    for name, s in zip(names, scores):
        print(f"{name:<{width}}  {line(s)}")
    print(f"{'total':<{width}}  {line(total)}")


def run_generation(
    model, seed: str, prompts_file: str | None, cfg, echo: bool, json_out: bool, show_stats: bool, on_warning
) -> None:
    """Run `rnncli generate`: one sample streamed as it is made; with -N, samples one after another
    under a `--- sample i ---` line (the first streamed); with --prompts, one line per answer
    (newlines escaped); with --json, one JSON object per answer. --stats: speed on stderr."""
    from rnncli.base.errors import RnncliError
    from rnncli.data.text import decode_text, read_bytes

    if prompts_file is not None:
        if seed:
            raise RnncliError("--seed and --prompts: give one or the other")
        prompts = decode_text(read_bytes([prompts_file]), "the prompts").split("\n")
        prompts = [p[:-1] if p.endswith("\r") else p for p in prompts[: -1 if prompts[-1] == "" else None]]
        if not prompts:
            raise RnncliError(f"no prompts in {prompts_file}: give one per line")
    else:
        prompts = [seed]
    lines, several = prompts_file is not None, cfg.num_samples > 1
    notice_compiling("decode")
    out = sys.stdout
    if not (json_out or lines):
        out.write(("--- sample 1 ---\n" if several else "") + (seed if echo else ""))
        out.flush()
    for event in model.events(prompts, cfg, on_warning):
        kind = event[0]
        if kind == "piece" and not (json_out or lines) and event[1] == 1:
            out.write(event[2])
            out.flush()
        elif kind == "answer":
            a = event[1]
            if json_out:
                out.write(json.dumps(a.to_json()) + "\n")
            elif lines:
                out.write(((a.prompt if echo else "") + a.text).translate(ONE_LINE) + "\n")
            elif a.index > 1:
                out.write(f"--- sample {a.index} ---\n" + (seed if echo else "") + a.text + "\n")
            elif several:
                out.write("\n")
            out.flush()
        elif kind == "stats" and show_stats:
            print(_speed_line(event[1]), file=sys.stderr)
    if not (json_out or lines or several) and out.isatty():
        out.write("\n")


# every character str.splitlines() breaks at, and the backslash, written as escapes
ONE_LINE = str.maketrans(
    {ch: ch.encode("unicode_escape").decode() for ch in "\\\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}
)


def _speed_line(s: dict) -> str:
    rate = lambda x: "-" if x is None else f"{x:,.0f}"  # noqa: E731
    return (
        f"rnncli: prompt {s['prompt_tokens']} tokens at {rate(s['prompt_tokens_per_s'])} tok/s; "
        f"first token after {1000 * s['first_token_s']:.1f} ms; {s['tokens']:,} tokens, {s['chars']:,} chars "
        f"in {s['decode_s']:.2f} s: {rate(s['tokens_per_s'])} tok/s, {rate(s['chars_per_s'])} chars/s"
    )


def run_bench(
    configs: list[str],
    measures: list[str],
    repeats: int,
    threads,
    against_torch: bool,
    json_out: bool,
    device: str = "auto",
    tune: bool = True,
    weights: str = "f32",
):
    """Run `rnncli bench`, printing progress on stderr and the results table (or JSON) on stdout.
    weights: the format generation reads (kernels/formats.py)."""
    import os

    from rnncli.base.errors import RnncliError
    from rnncli.kernels.device import backend
    from rnncli.run import bench

    device = backend(device).NAME  # auto resolved here, once, for every child process
    if weights != "f32" and device != "cpu":
        raise RnncliError(
            f"--weights {weights}: the GPU decoder reads float32 weights only; use --device cpu"
        )

    err = Console(stderr=True, soft_wrap=True)
    notice_compiling("sequence_backward")
    rate, memory = bench.matmul_gflops(threads, device), bench.memory_gb_per_s()
    rows = []
    for row in bench.run(configs, measures, repeats, threads, against_torch, device, tune, weights):
        rows.append(row)
        err.print(f"  {row['config']:<12} {row['measure']:<9} {row['impl']:<7} {row['rate']:>12,.0f}/s")
    from rnncli.base.machine import cpu_description

    cpu, lanes = cpu_description()
    machine = {
        "cpu": cpu,
        "vector_floats": lanes,
        "cores": os.cpu_count(),
        "threads": threads or os.cpu_count(),
        "matmul_gflops": rate,
        "memory_gb_per_s": memory,
        "repeats": repeats,
        "device": device,
        "weights": weights,
    }
    if json_out:
        print(json.dumps({"machine": machine, "results": rows}))
        return
    from rich.table import Table

    pairs = ", ratio: median of each repeat's pair" if against_torch else ""
    where = f"{cpu}, {lanes}-float vectors, {machine['threads']} threads" if device == "cpu" else "CUDA GPU"
    where += f", generating from {weights} weights" if weights != "f32" else ""
    table = Table(
        title=f"rnncli bench: {where}, float32 sgemm {rate:.0f} GFLOP/s, one core's memory "
        f"{memory:.1f} GB/s, medians of {repeats}{pairs}",
        caption="GFLOP/s: the products each side executes (nominal: the model's); of matmul: GFLOP/s "
        "over the sgemm's; of memory: the weights read a character, a second, over the bandwidth",
    )
    columns = [
        "config",
        "measure",
        "rnncli /s",
        "GFLOP/s",
        "nominal",
        "of matmul",
        "weights GB/s",
        "of memory",
        "warm-up s",
    ]
    if against_torch:
        columns += ["torch /s", "torch of matmul", "torch of memory", "ratio"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("config", "measure") else "right")
    unit = {"train": "tok", "eval": "tok", "generate": "char", "generate-batch": "char"}

    def of_memory(r):
        return "-" if r["weight_gb_per_s"] is None else f"{100 * r['weight_gb_per_s'] / memory:.0f}%"

    for r in (r for r in rows if r["impl"] == "rnncli"):
        cells = [
            r["config"],
            r["measure"],
            f"{r['rate']:,.0f} {unit[r['measure']]}",
            f"{r['gflops']:.1f}",
            f"{r['gflops_nominal']:.1f}",
            f"{100 * r['gflops'] / rate:.0f}%",
            "-" if r["weight_gb_per_s"] is None else f"{r['weight_gb_per_s']:.1f}",
            of_memory(r),
            f"{r['warmup_s']:.2f}",
        ]
        if against_torch:
            t = next(
                x
                for x in rows
                if x["impl"] == "torch" and x["config"] == r["config"] and x["measure"] == r["measure"]
            )
            cells += [
                f"{t['rate']:,.0f}",
                f"{100 * t['gflops'] / rate:.0f}%",
                of_memory(t),
                f"{r['ratio']:.2f}x",
            ]
        table.add_row(*cells)
    Console(width=200).print(table)
