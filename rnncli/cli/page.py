"""The self-contained HTML page of `inspect --html`: a Probe's surprise, predictions and unit
activations packed into one file with its script and styles (page_assets/); nothing is fetched.

Builds a string and writes it; runs no model and prints nothing.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from importlib import resources

import numpy as np

from rnncli.base.errors import RnncliError

TOP_SHOWN = 5  # predictions kept per token
H_STEP = 2 / 255  # h in [-1, 1] as 0..255: h = -1 + q * H_STEP, whatever the unit
UNIT_TAG = "application/x-rnncli-unit"
_ESCAPE = re.compile("[<>&\u2028\u2029\ud800-\udfff]")  # inside JSON strings in a <script>
_SLOT = re.compile(r"\{\{(\w+)\}\}")


def build_page(probe, found, info: dict, max_bytes: int = 20_000_000) -> str:
    """One HTML document showing `probe` (rnncli.run.probe.Probe) and the `found` units
    (neurons.Found). `info`: title (the text's file name), cell, layers, hidden, tokenizer (the
    model summary, flat or under "model"), mean_loss (else the probe's), units (optional
    (layer, state, unit) triples to keep first after the found ones, the CLI's --neuron), absent
    (optional: properties the text never varies). Unit activations are kept while the page stays
    within max_bytes (UTF-8): all of them when they fit, else the found ones, then info's units,
    then the most variable of each layer and state in turn."""
    meta = _meta(probe, found, info)
    parts = {
        "title": html.escape(_clean(str(info.get("title", "text")))),
        "summary": html.escape(_clean(_summary(info))),
        "loss": _loss_line(info.get("mean_loss", probe.mean_loss())),
        "css": _asset("page.css"),
        "js": _asset("page.js"),
        "meta": _json(meta),
    }
    total = sum(a.shape[1] for a in probe.acts.values())
    template = _asset("page.html")
    # the longest note
    fixed = len(_fill(template, {**parts, "keep": _keep_note(total, total), "units": ""}).encode())
    room = max_bytes - fixed
    if room < 0:
        raise RnncliError(
            f"the page would take {fixed / 1e6:.1f} MB before any unit's activations, over its "
            f"{max_bytes / 1e6:g} MB limit: use a shorter text or raise --page-mb"
        )
    units = []
    for key, unit in _unit_order(probe.acts, found, info.get("units") or ()):
        element = _unit_element(probe.acts[key][:, unit], key, unit)
        if len(element) > room:  # ASCII: characters are bytes
            break
        units.append(element)
        room -= len(element)
    note = "" if len(units) == total else _keep_note(len(units), total)
    return _fill(template, {**parts, "keep": note, "units": "".join(units)})


def write_page(path, page: str) -> None:
    """Write the page atomically (the previous file, if any, stays whole until the new one is)."""
    from rnncli.base.files import write_atomic

    data = page.encode("utf-8")
    write_atomic(path, lambda f: f.write(data), "page")


def _meta(probe, found, info: dict) -> dict:
    """Everything the script needs but the units: tokens, vocabulary, losses, predictions."""
    K = min(TOP_SHOWN, probe.top_ids.shape[1])
    wide = len(probe.vocab) > 65536
    top_ids = probe.top_ids[:, :K].astype("<u4" if wide else "<u2")  # (n, K)
    top_p = np.rint(np.clip(probe.top_p[:, :K], 0, 1) * 255).astype(np.uint8)  # (n, K)
    shapes = {f"{layer}:{state}": a.shape[1] for (layer, state), a in sorted(probe.acts.items())}
    from rnncli.run.neurons import PROPERTIES

    return {
        "n": probe.n,
        "tokens": list(probe.tokens),
        "vocab": list(probe.vocab),
        "loss": _b64(probe.loss.astype("<f4")),
        "top_k": K,
        "top_ids": _b64(top_ids),
        "top_ids_type": "u32" if wide else "u16",
        "top_p": _b64(top_p),  # probability * 255
        "states": shapes,  # "layer:state" -> units
        "total_units": int(sum(shapes.values())),
        "found": [f.to_json() for f in found],
        "properties": PROPERTIES,
        "absent": list(info.get("absent") or ()),
        # the CLI's --threshold and --state, as the page starts
        "threshold": float(info.get("threshold", 0.3)),
        "state": info.get("state", "h"),
    }


def _unit_order(acts: dict, found, extra):
    """(key, unit) of every unit once: found ones, then `extra`, then by variance, highest first,
    taking each (layer, state) in turn so that every one of them gets its share."""
    seen, order = set(), []

    def add(key, unit):
        if key in acts and 0 <= unit < acts[key].shape[1] and (key, unit) not in seen:
            seen.add((key, unit))
            order.append((key, unit))

    for f in found:
        add((f.layer, f.state), int(f.unit))
    for layer, state, unit in extra:
        add((int(layer), state), int(unit))
    ranked = {key: np.argsort(-_variance(acts[key]), kind="stable") for key in sorted(acts)}
    for rank in range(max((len(r) for r in ranked.values()), default=0)):
        for key, r in ranked.items():
            if rank < len(r):
                add(key, int(r[rank]))
    return order


def _variance(a: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """(H,) variance of each column of a (n, H), summed in float64 a chunk of rows at a time."""
    n, H = a.shape
    s, ss = np.zeros(H), np.zeros(H)
    for i in range(0, n, chunk):
        x = a[i : i + chunk].astype(np.float64)
        s += x.sum(0)
        ss += (x * x).sum(0)
    mean = s / max(n, 1)
    return np.maximum(ss / max(n, 1) - mean * mean, 0.0)


def quantise(values: np.ndarray, state: str) -> tuple[np.ndarray, float, float]:
    """One unit's activations (n,) as uint8 and the (lo, hi) they span: h on the fixed [-1, 1]
    (a threshold means the same for every unit), c on its own [min, max]. value = lo + q*(hi-lo)/255."""
    if state == "h":
        lo, hi = -1.0, 1.0
    else:
        finite = values[np.isfinite(values)]
        lo = float(f"{finite.min():.7g}") if finite.size else 0.0
        hi = float(f"{finite.max():.7g}") if finite.size else 0.0
    span = hi - lo
    if span <= 0:
        return np.zeros(len(values), np.uint8), lo, hi
    q = np.rint((np.nan_to_num(values.astype(np.float64), nan=lo) - lo) * (255 / span))
    return np.clip(q, 0, 255).astype(np.uint8), lo, hi


def _unit_element(values: np.ndarray, key, unit: int) -> str:
    layer, state = key
    q, lo, hi = quantise(values, state)
    scale = "" if state == "h" else f' data-lo="{lo!r}" data-hi="{hi!r}"'
    return f'<script type="{UNIT_TAG}" id="u{layer}{state}{unit}"{scale}>{_b64(q)}</script>\n'


def _keep_note(kept: int, total: int) -> str:
    return (
        f"this page keeps {kept} of {total} units (the found ones, then the most variable); "
        "run on a shorter text or raise --page-mb for all"
    )


def _summary(info: dict) -> str:
    m = info.get("model", info)
    parts = []
    if m.get("cell"):
        parts.append(str(m["cell"]).upper())
    if m.get("layers") and m.get("hidden"):
        parts.append(f"{m['layers']} layer{'s' if int(m['layers']) != 1 else ''} of {m['hidden']} units")
    if m.get("tokenizer"):
        parts.append(f"{m['tokenizer']} tokens")
    return ", ".join(parts) or "model"


def _loss_line(nats) -> str:
    try:
        nats = float(nats)
    except (TypeError, ValueError):
        nats = math.nan
    if not math.isfinite(nats):
        return "mean loss -"
    return f"mean loss {nats:.4f} nats/token ({nats / math.log(2):.4f} bits/token)"


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _clean(text: str) -> str:
    """Text that UTF-8 can carry (lone surrogates as U+FFFD)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _json(value) -> str:
    """JSON safe inside a <script> element: <, >, &, line separators and lone surrogates escaped
    (they only occur inside strings, where \\uXXXX means the same)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return _ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _asset(name: str) -> str:
    text = resources.files("rnncli.cli").joinpath("page_assets", name).read_text(encoding="utf-8")
    if name != "page.html" and re.search(r"</(script|style)", text, re.I):
        raise RnncliError(f"page asset {name} would close its own element")  # a packaging error, not a user's
    return text


def _fill(template: str, parts: dict) -> str:
    """The template's {{name}} slots replaced in one pass (what is put in is never read again)."""
    return _SLOT.sub(lambda m: parts[m.group(1)], template)
