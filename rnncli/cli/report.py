"""`rnncli inspect`: what a checkpoint holds, read from its header alone (no numpy, no numba)."""

from __future__ import annotations

from rnncli.run.curve import LossCurve
from rnncli.store import validate
from rnncli.store.checkpoint import TRAINING_PREFIXES


def describe(path: str) -> dict:
    """Everything inspect shows, as plain JSON-ready data, from a header validate.py has checked."""
    c = validate.read(path)
    model_tensors = {k: v for k, v in c.table.items() if not k.startswith(TRAINING_PREFIXES)}
    vocab = c.tokenizer.get("vocab")
    return {
        "path": str(path),
        "format_version": c.meta["format_version"],
        "rnncli_version": c.meta.get("rnncli_version"),
        "model": c.meta["model"],
        "parameters": c.model.n_params,
        "tensors": {k: v["shape"] for k, v in model_tensors.items()},
        "tokenizer": c.tokenizer["kind"],
        "vocab_size": c.model.vocab_size,
        "vocab_preview": "".join(vocab[:100]) if c.tokenizer["kind"] == "char" else None,
        "train": c.meta["train"],
        "progress": c.meta.get("progress"),
        "resumable": c.resumable,
        "history": c.meta.get("history", []),
        "curve": LossCurve.from_json(c.meta.get("curve")).all_points(),
        **({"recipe": c.meta["recipe"]} if "recipe" in c.meta else {}),
    }


def chart(history: list, curve: list | None = None, width: int = 60, height: int = 10) -> list[str]:
    """Train (·: every step's, from the curve, else the means between validations) and validation (o)
    loss against step, as lines of text."""
    train = [(s, tr, "·") for s, tr in curve] if curve else [(s, tr, "·") for s, tr, _ in history]
    points = train + [(s, v, "o") for s, _, v in history if v is not None]
    if not points:
        return []
    s0, s1 = min(p[0] for p in points), max(p[0] for p in points)
    lo, hi = min(p[1] for p in points), max(p[1] for p in points)
    grid = [[" "] * width for _ in range(height)]
    for s, y, mark in points:
        col = 0 if s1 == s0 else round((s - s0) / (s1 - s0) * (width - 1))
        row = 0 if hi == lo else round((hi - y) / (hi - lo) * (height - 1))
        if grid[row][col] != "o":
            grid[row][col] = mark
    lines = []
    for r, cells in enumerate(grid):
        label = f"{hi:7.3f} " if r == 0 else f"{lo:7.3f} " if r == height - 1 else " " * 8
        lines.append(label + "|" + "".join(cells))
    lines.append(" " * 8 + "+" + "-" * width)
    lines.append(" " * 9 + f"step {s0}".ljust(width - 10) + f"step {s1}".rjust(10))
    return lines


def _n(x) -> str:
    """A stored number as people write it (0.3, not 0.30000000000000004)."""
    return format(x, ".6g") if isinstance(x, float) else str(x)


def render(info: dict) -> None:
    from rich.console import Console

    out = Console(highlight=False, soft_wrap=True)
    m, t, p = info["model"] or {}, info["train"] or {}, info["progress"] or {}
    out.print(f"[bold]{info['path']}[/bold]  (rnncli checkpoint v{info['format_version']})")
    out.print(
        f"model      {m.get('cell')} x{m.get('layers')} layers, hidden {m.get('hidden')}, "
        f"embedding {m.get('embed')}, dropout {_n(m.get('dropout'))}; {info['parameters']:,} parameters"
    )
    out.print(
        f"tokenizer  {info['tokenizer']}, vocabulary {info['vocab_size']}"
        + (f": {info['vocab_preview']!r}" if info["vocab_preview"] else "")
    )
    if t:
        out.print(
            f"training   batch {t.get('batch')} x seq {t.get('seq')}, Adam lr {_n(t.get('lr'))} "
            f"({t.get('lr_schedule')}), clip {_n(t.get('clip'))}, val {_n(t.get('val_frac'))}, "
            f"seed {t.get('rng_seed')}"
        )
    why = info.get("recipe", {}).get("why") if isinstance(info.get("recipe"), dict) else None
    if isinstance(why, str):
        out.print(f"recipe     automatic: {why}", markup=False)
    if p:
        best = p.get("best_val_loss")
        out.print(
            f"progress   step {p.get('step')}, epoch {p.get('epoch')}, {p.get('tokens_seen', 0):,} tokens, "
            f"{p.get('elapsed_s', 0):.0f} s" + ("" if info["resumable"] else " (weights only)")
        )
        out.print(
            "best val   "
            + (f"{best:.4f} nats/token at step {p.get('best_step')}" if best is not None else "-")
        )
    lines = chart(info["history"], info.get("curve"))
    if lines:
        out.print("\nloss (· train, o validation)")
        for line in lines:
            out.print(line, markup=False)
