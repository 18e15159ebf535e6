"""Finding what units track: simple properties of a text position by position, units ranked by
how well their activation follows each (Pearson correlation), and LSTMVis's match (the units
that stay on across a span, and the other spans where the same units are on).

Works on a Probe's activations; computes nothing of the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnncli.base.errors import RnncliError

# name -> what it measures at a position (after reading the token there)
PROPERTIES = {
    "quote": "inside double quotes",
    "brackets": "inside (), [] or {}",
    "line_position": "characters since the last newline",
    "after_newline": "the token just read ends a line",
    "digit": "the token just read ends in a digit",
    "upper": "the token just read ends in an upper-case letter",
    "indent": "indentation of the current line (leading whitespace)",
    "whitespace": "the token just read is whitespace",
}
OPEN, CLOSE = "([{", ")]}"


def text_properties(tokens: list[str]) -> np.ndarray:
    """(n, len(PROPERTIES)) float64: each property's value after each token, in PROPERTIES' order."""
    out = np.zeros((len(tokens), len(PROPERTIES)))
    quote = depth = column = indent = 0
    leading = True
    for i, tok in enumerate(tokens):
        for ch in tok:
            if ch == '"':
                quote ^= 1
            elif ch in "\u201c\u201d":
                quote = int(ch == "\u201c")
            elif ch in OPEN:
                depth += 1
            elif ch in CLOSE:
                depth = max(0, depth - 1)
            if ch == "\n":
                column = indent = 0
                leading = True
                continue
            column += 1
            if leading and ch in " \t":
                indent += 1
            else:
                leading = False
        last = tok[-1:] or " "
        out[i] = (
            quote,
            depth > 0,
            column,
            tok.endswith("\n"),
            last.isdigit(),
            last.isupper(),
            indent,
            bool(tok) and tok.isspace(),
        )
    return out


def correlations(acts: np.ndarray, props: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """(H, P) Pearson correlation of each unit's activation (n, H) with each property (n, P);
    0 where either is constant over the text. Sums in float64, a chunk of rows at a time."""
    n, H = acts.shape
    sx, sxx = np.zeros(H), np.zeros(H)
    sxf = np.zeros((H, props.shape[1]))
    for a in range(0, n, chunk):
        x = acts[a : a + chunk].astype(np.float64)
        sx += x.sum(0)
        sxx += (x * x).sum(0)
        sxf += x.T @ props[a : a + chunk]
    mx, mf = sx / n, props.mean(0)
    vx = np.maximum(sxx / n - mx * mx, 0.0)
    vf = props.var(0)
    cov = sxf / n - np.outer(mx, mf)
    scale = np.sqrt(np.outer(vx, vf))
    ok = scale > 1e-12
    r = np.zeros_like(cov)
    r[ok] = cov[ok] / scale[ok]
    return np.clip(r, -1.0, 1.0)


@dataclass(frozen=True)
class Found:
    prop: str
    layer: int
    state: str
    unit: int
    r: float

    def to_json(self) -> dict:
        return {
            "property": self.prop,
            "layer": self.layer,
            "state": self.state,
            "unit": self.unit,
            "r": round(self.r, 4),
        }


def find_neurons(acts: dict, tokens: list[str], best: int = 3) -> tuple[list[Found], list[str]]:
    """The `best` units per property by |correlation| over every (layer, state) in acts, and the
    properties the text never varies (nothing to find)."""
    props = text_properties(tokens)
    names = list(PROPERTIES)
    absent = [name for j, name in enumerate(names) if props[:, j].var() <= 1e-12]
    found = []
    table = [(key, correlations(a, props)) for key, a in sorted(acts.items())]
    for j, name in enumerate(names):
        if name in absent:
            continue
        ranked = sorted(
            ((abs(r[u, j]), key, u, r[u, j]) for key, r in table for u in range(r.shape[0])),
            key=lambda t: -t[0],
        )
        found += [Found(name, key[0], key[1], int(u), float(r)) for _, key, u, r in ranked[:best]]
    return found, absent


@dataclass(frozen=True)
class Match:
    start: int  # first position of the span
    end: int  # one past the last
    score: float  # mean share of the selected units on across it


def match_span(acts: dict, state: str, start: int, end: int, threshold: float, limit: int = 10):
    """LSTMVis's match: the units (layer, unit) of `state` on (>= threshold) at every position of
    [start, end), and up to `limit` other spans where at least half of them are on, best first
    (the larger share on, then the length closest to the query's)."""
    keys = sorted(k for k in acts if k[1] == state)
    n = len(acts[keys[0]]) if keys else 0
    if not (0 <= start < end <= n):
        raise RnncliError(f"--match {start}:{end} is not a span of the {n} tokens (START < END <= {n})")
    units, on = [], np.zeros(n, np.int64)
    for key in keys:
        above = acts[key] >= threshold  # (n, H)
        picked = np.flatnonzero(above[start:end].all(axis=0))
        units += [(key[0], int(u)) for u in picked]
        on += above[:, picked].sum(axis=1)
    if not units:
        return units, []
    need = -(-len(units) // 2)
    hit = np.concatenate([[False], on >= need, [False]])
    edges = np.flatnonzero(hit[1:] != hit[:-1])
    spans = []
    for a, b in zip(edges[::2], edges[1::2]):
        if b <= start or a >= end:
            spans.append(Match(int(a), int(b), float(on[a:b].mean() / len(units))))
    spans.sort(key=lambda m: (-m.score, abs((m.end - m.start) - (end - start)), m.start))
    return units, spans[:limit]
