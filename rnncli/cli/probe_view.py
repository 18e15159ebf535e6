"""`rnncli inspect MODEL --text FILE`: the text coloured by surprise or by a unit, the top next
tokens, the units that track simple properties, LSTMVis's span match, JSON records, a web page.
Output for people and scripts only: the numbers come from probe.py and neurons.py."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
from rich.console import Console
from rich.text import Text

SURPRISE_EDGES = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0)  # nats: the colour steps of the surprise scale
SURPRISE_COLOURS = (None, "#4d3d00", "#7a5c00", "#a66300", "#cc5200", "#e03000", "#ff0000")
ACT_EDGES = (-0.75, -0.45, -0.15, 0.15, 0.45, 0.75)  # activation: blue below 0, red above
ACT_COLOURS = ("#2b5fd9", "#4f7fe0", "#8aa8eb", None, "#eb9a8a", "#e0634f", "#d92b2b")
WHITESPACE = {"\n": "⏎", " ": "␣", "\t": "⇥", "\r": "␍"}


def visible(token: str) -> str:
    """A token as a person can see it in a list: whitespace as symbols."""
    return "".join(WHITESPACE.get(ch, ch) for ch in token) if token.isspace() else token


def _style(colour: str | None) -> str:
    return "" if colour is None else f"on {colour}"


def coloured(tokens: list[str], values: np.ndarray, edges, colours) -> Text:
    """The tokens, each on the colour of the bin its value falls in (no colour for NaN)."""
    bins = np.searchsorted(np.asarray(edges), np.nan_to_num(values, nan=-np.inf), side="right")
    if np.isnan(values).any():
        bins[np.isnan(values)] = colours.index(None)
    text = Text()
    for tok, b in zip(tokens, bins.tolist()):
        text.append(tok, style=_style(colours[b]) if not tok.isspace() else "")
    return text


def legend(title: str, edges, colours) -> Text:
    text = Text(f"{title}: ")
    labels = [f"<{edges[0]:g}"] + [f"{a:g}..{b:g}" for a, b in zip(edges, edges[1:])] + [f">={edges[-1]:g}"]
    for label, colour in zip(labels, colours):
        text.append(f" {label} ", style=_style(colour) or "dim")
        text.append(" ")
    return text


def char_span(tokens: list[str], start: int, end: int) -> tuple[int, int]:
    """Token positions [a, b) covering character offsets [start, end) of the text as read."""
    ends = np.cumsum([len(t) for t in tokens])
    a = int(np.searchsorted(ends, start, side="right"))
    b = int(np.searchsorted(ends, end - 1, side="right")) + 1
    if end > (ends[-1] if len(ends) else 0):
        from rnncli.base.errors import RnncliError

        raise RnncliError(f"--match {start}:{end} reaches past the text's {int(ends[-1])} characters")
    return a, min(b, len(tokens))


def token_offsets(tokens: list[str]) -> np.ndarray:
    """(n + 1,) character offset at which each token starts, and the text's length."""
    return np.concatenate([[0], np.cumsum([len(t) for t in tokens])]).astype(np.int64)


def wanted_states(cfg, model_cfg) -> list[tuple[int, str]]:
    """The (layer, state) activations this run needs to keep."""
    every = [
        (k, s) for k in range(model_cfg.layers) for s in ("h", "c") if s == "h" or model_cfg.cell == "lstm"
    ]
    if cfg.html or cfg.find_neurons:
        return every
    keys = {(layer, cfg.state) for layer, _ in cfg.neurons}
    if cfg.match:
        keys |= {(k, cfg.state) for k in range(model_cfg.layers)}
    return sorted(keys)


def run_probe(
    model_path: str,
    sources: list[str],
    cfg,
    threads,
    json_out: bool,
    on_warning,
    tune=True,
    notes=None,
    weights: str = "f32",
) -> None:
    """Load, probe (the API's Model.probe), then show what cfg asks for (and write the page)."""
    from rnncli.api.model import load
    from rnncli.base import pathcheck
    from rnncli.base.errors import RnncliError
    from rnncli.data.text import read_bytes, text_for
    from rnncli.model.config import to_dict
    from rnncli.run.neurons import find_neurons, match_span

    if cfg.html:
        pathcheck.writable_file(cfg.html, "the page", [model_path, *sources])
    model = load(model_path, cfg.device, weights=weights, threads=threads, tune=tune, notes=notes)
    cfg.check_model(model.config)
    data = text_for(
        model.tokenizer, read_bytes(sources), "the text", "; this model reads text, not arbitrary bytes"
    )
    states = wanted_states(cfg, model.config)
    probe = model.probe(data, max(cfg.top, 5), states, on_warning)
    if cfg.find_neurons and probe.n < MIN_FIND:
        raise RnncliError(
            f"--find-neurons needs a text of {MIN_FIND} tokens at least (this one has {probe.n}): "
            "correlations over a few positions mean nothing"
        )
    found, absent = (
        find_neurons(probe.acts, probe.tokens)
        if (cfg.find_neurons or cfg.html) and probe.n >= MIN_FIND
        else ([], [])
    )
    matched = None
    if cfg.match:
        a, b = char_span(probe.tokens, *cfg.match)
        units, spans = match_span(probe.acts, cfg.state, a, b, cfg.threshold)
        matched = (a, b, units, spans)
    mean = probe.mean_loss()
    print(
        f"rnncli: {probe.n} tokens, mean surprise {mean:.4f} nats/token "
        f"({mean / math.log(2):.4f} bits/token)",
        file=sys.stderr,
    )
    if cfg.html:
        from rnncli.cli.page import build_page, write_page

        info = {
            "title": ", ".join(sources),
            "model": {**to_dict(model.config), "tokenizer": model.tokenizer},
            "threshold": cfg.threshold,
            "state": cfg.state,
            "mean_loss": mean,
            "units": [(k, cfg.state, u) for k, u in cfg.neurons],
            "absent": absent,
        }
        write_page(cfg.html, build_page(probe, found, info, int(cfg.page_mb * 1e6)))
        print(f"rnncli: wrote {cfg.html}", file=sys.stderr)
    if json_out:
        _json(probe, cfg, found, absent, matched)
    else:
        _terminal(probe, cfg, found, absent, matched)


def _json(probe, cfg, found, absent, matched) -> None:
    keys = [(layer, cfg.state, unit) for layer, unit in cfg.neurons]
    for i, tok in enumerate(probe.tokens):
        loss = probe.loss[i]
        rec = {"i": i, "token": tok, "loss": None if math.isnan(loss) else round(float(loss), 5)}
        if cfg.top:
            rec["top"] = [
                [probe.vocab[t], round(float(p), 5)]
                for t, p in zip(probe.top_ids[i, : cfg.top].tolist(), probe.top_p[i, : cfg.top].tolist())
            ]
        if keys:
            rec["acts"] = {f"{k}:{u}:{s}": round(float(probe.acts[(k, s)][i, u]), 5) for k, s, u in keys}
        print(json.dumps(rec, ensure_ascii=False))
    if cfg.find_neurons:
        print(json.dumps({"find_neurons": [f.to_json() for f in found], "absent": absent}))
    if matched:
        print(json.dumps({"match": _match_json(probe, cfg, matched)}, ensure_ascii=False))


def _match_json(probe, cfg, matched) -> dict:
    a, b, units, spans = matched
    at = token_offsets(probe.tokens)
    return {
        "span": [int(at[a]), int(at[b])],
        "state": cfg.state,
        "threshold": cfg.threshold,
        "units": [f"{k}:{u}" for k, u in units],
        "spans": [
            {
                "start": int(at[m.start]),
                "end": int(at[m.end]),
                "score": round(m.score, 4),
                "text": "".join(probe.tokens[m.start : m.end]),
            }
            for m in spans
        ],
    }


MIN_FIND = 20  # tokens --find-neurons needs before a correlation says anything
TOP_LINES = 400  # at most this many positions of --top in the terminal; JSON and the page have all


def _terminal(probe, cfg, found, absent, matched) -> None:
    # markup off: the text, spans and tokens come from the user's file and may hold [brackets]
    console = Console(file=sys.stdout, soft_wrap=True, highlight=False, markup=False)
    err = Console(stderr=True, soft_wrap=True, highlight=False, markup=False)
    other_views = cfg.top or cfg.find_neurons or cfg.match or cfg.html
    if cfg.neurons:
        layer, unit = cfg.neurons[0]
        values = probe.acts[(layer, cfg.state)][:, unit]
        console.print(coloured(probe.tokens, values, ACT_EDGES, ACT_COLOURS))
        console.print(legend(f"unit {layer}:{unit} {cfg.state}", ACT_EDGES, ACT_COLOURS))
    elif not other_views:
        console.print(coloured(probe.tokens, probe.loss, SURPRISE_EDGES, SURPRISE_COLOURS))
        console.print(legend("surprise, nats", SURPRISE_EDGES, SURPRISE_COLOURS))
    if cfg.top:
        shown = min(probe.n, TOP_LINES)
        for i in range(shown):
            loss = "-" if math.isnan(probe.loss[i]) else f"{probe.loss[i]:.3f}"
            guesses = "  ".join(
                f"{visible(probe.vocab[t])!s:>4} {p * 100:5.1f}%"
                for t, p in zip(probe.top_ids[i, : cfg.top].tolist(), probe.top_p[i, : cfg.top].tolist())
            )
            console.print(f"{i:6d}  {visible(probe.tokens[i]):>4}  {loss:>6}  next: {guesses}")
        if shown < probe.n:
            err.print(
                f"rnncli: --top shown for the first {shown} of {probe.n} positions; --json or --html has all"
            )
    if cfg.find_neurons:
        _print_found(console, found, absent)
    if matched:
        _print_match(console, probe, cfg, matched)


def _print_found(console, found, absent) -> None:
    from rnncli.run.neurons import PROPERTIES

    console.print(f"{'property':<14} {'what it measures':<52} {'unit':>8} {'r':>7}")
    for f in found:
        console.print(
            f"{f.prop:<14} {PROPERTIES[f.prop]:<52} {f'{f.layer}:{f.unit} {f.state}':>8} {f.r:+7.3f}"
        )
    if absent:
        console.print(f"(not varying in this text, nothing to find: {', '.join(absent)})")


def _print_match(console, probe, cfg, matched) -> None:
    m = _match_json(probe, cfg, matched)
    s, e = m["span"]
    query = "".join(probe.tokens[matched[0] : matched[1]])
    if not m["units"]:
        console.print(
            f"no {cfg.state} unit stays >= {cfg.threshold:g} across {s}:{e} {query!r}; "
            "try a lower --threshold"
        )
        return
    console.print(
        f"{len(m['units'])} {cfg.state} units stay >= {cfg.threshold:g} across {s}:{e} {query!r}: "
        f"{' '.join(m['units'])}"
    )
    if not m["spans"]:
        console.print("no other span has half of them on")
    for rank, sp in enumerate(m["spans"], 1):
        console.print(f"{rank:3d}  {sp['start']}:{sp['end']}  {sp['score'] * 100:5.1f}% on  {sp['text']!r}")
