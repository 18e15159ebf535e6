"""Looking inside a model (probe.py, neurons.py, `inspect --text`): per-position losses, top tokens and
states against the float64 reference, a hand-built quote unit that --find-neurons must rank first,
LSTMVis's match, and the command's outputs."""

import json

import numpy as np
import pytest

from rnncli.data.text import Tokenizer
from rnncli.kernels import reference
from rnncli.model.config import ModelConfig, TrainConfig, to_dict
from rnncli.model.model import Model
from rnncli.model.params import init_params
from rnncli.run.neurons import PROPERTIES, correlations, find_neurons, match_span, text_properties
from rnncli.run.probe import Layout, probe_ids, token_texts
from rnncli.store import checkpoint
from tests.helpers import CELLS, as64, assert_close
from tests.hostile import assert_clean, run_cli


def reference_run(params, ids_tb):
    """Reference log-probabilities (T, B, V) and states hs, cs (L, T, B, H) from zero states."""
    cfg = params.cfg
    zeros = np.zeros((cfg.layers, ids_tb.shape[1], cfg.hidden))
    _, logits, hs, cs, _ = reference.forward(as64(params), cfg.cell, ids_tb, zeros, zeros)
    z = logits - logits.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True)), hs, cs


def states_of(cfg):
    return [(k, s) for k in range(cfg.layers) for s in "hc" if s == "h" or cfg.cell == "lstm"]


def check_positions(out, params, ids, x_b, recorded):
    """Every recorded position of one stream (inputs x_b (R,), text positions `recorded` (R,), -1 for
    none) against the reference run of that stream."""
    logp, hs, cs = reference_run(params, x_b[:, None])
    steps = np.flatnonzero(recorded >= 0)
    pos = recorded[steps]
    for (k, s), acts in out["acts"].items():
        ref = (hs if s == "h" else cs)[k, steps, 0]
        assert_close(acts[pos], ref, atol=2e-5, what=f"layer {k} {s}")
    has_next = pos + 1 < len(ids)
    ref_loss = -logp[steps[has_next], 0, ids[pos[has_next] + 1]]
    assert_close(out["loss"][pos[has_next] + 1], ref_loss, atol=2e-5, what="loss")
    ref_p = np.exp(logp[steps, 0])
    top = np.take_along_axis(ref_p, out["top_ids"][pos].astype(np.int64), axis=1)
    assert_close(out["top_p"][pos], top, atol=2e-6, what="top probabilities")
    kth = np.sort(ref_p, axis=1)[:, -out["top_ids"].shape[1]]
    assert np.all(top[:, -1] >= kth - 1e-6) and np.all(np.diff(top, axis=1) <= 1e-7), (
        "top-k not the likeliest, in order"
    )


@pytest.mark.parametrize("cell", CELLS)
def test_one_stream_is_the_text_read_straight_through_as_the_reference_reads_it(cell):
    rng = np.random.default_rng(3)
    cfg = ModelConfig(vocab_size=11, cell=cell, layers=2, hidden=6, embed=5)
    params = init_params(cfg, rng)
    ids = rng.integers(0, 11, 45)
    out = probe_ids(Model(params), ids, seq=8, max_batch=1, top_k=4, states=states_of(cfg))
    assert np.isnan(out["loss"][0]) and not np.isnan(out["loss"][1:]).any()
    check_positions(out, params, ids, ids, np.arange(len(ids)))


@pytest.mark.parametrize("cell", CELLS)
def test_several_streams_each_warm_up_and_record_their_own_positions(cell):
    rng = np.random.default_rng(4)
    cfg = ModelConfig(vocab_size=9, cell=cell, layers=2, hidden=5, embed=4)
    params = init_params(cfg, rng)
    ids = rng.integers(0, 9, 601)
    lay = Layout.plan(len(ids), 8, 4)
    assert lay.B == 4 and lay.warm == 16
    where = lay.positions()
    assert sorted(where[where >= 0].tolist()) == list(range(len(ids))), "every position exactly once"
    out = probe_ids(Model(params), ids, seq=8, max_batch=4, top_k=3, states=states_of(cfg))
    x = lay.inputs(ids)
    for b in range(lay.B):
        check_positions(out, params, ids, x[b], where[b])


def test_token_texts_show_what_was_read():
    tok = Tokenizer.build("word", "the cat, the hat")
    text = "the dog, the cat"
    ids, _ = tok.encode(text)
    assert "".join(token_texts(tok, text, ids)) == text  # <unk> shows as the word it stands for
    data = "aé€😀b".encode()
    ids, _ = Tokenizer("byte").encode(data)
    shown = token_texts(Tokenizer("byte"), data, ids)
    assert len(shown) == len(data) and "".join(shown) == "aé€😀b"
    shown = token_texts(Tokenizer("byte"), b"a\xffb", np.frombuffer(b"a\xffb", np.uint8))
    assert shown == ["a", "\ufffd", "b"]


def test_text_properties():
    props = text_properties(list('ab "c(d)"\n  9X'))
    col = {name: props[:, j].tolist() for j, name in enumerate(PROPERTIES)}
    assert col["quote"] == [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert col["brackets"] == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert col["line_position"] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4]
    assert col["after_newline"][9] == 1 and sum(col["after_newline"]) == 1
    assert col["indent"] == [0] * 10 + [1, 2, 2, 2]
    assert col["digit"][12] == 1 and col["upper"][13] == 1 and sum(col["whitespace"]) == 4


def test_correlations_agree_with_numpy():
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((300, 7)).astype(np.float32)
    acts[:, 3] = 0.25  # constant: no correlation
    props = rng.standard_normal((300, 2))
    r = correlations(acts, props, chunk=64)
    for u in (0, 1, 2, 4, 5, 6):
        for j in range(2):
            assert abs(r[u, j] - np.corrcoef(acts[:, u], props[:, j])[0, 1]) < 1e-6
    assert np.all(r[3] == 0)


QUOTED = (
    '\nhe said "no more" and left.\nthen (quietly) she said "yes, 42 times"\n'
    'Nothing "at all" was "said" today\n    "an indented quote"\nsee [/b] and [bold]x[/bold]\n'
) * 3


def quote_unit_checkpoint(path, planted=2, H=5):
    """A one-layer GRU whose unit `planted` is set by hand to be +1 inside double quotes and -1
    outside (a newline resets it); the other units are random. One-hot embeddings."""
    tok = Tokenizer.build("char", QUOTED)
    V = len(tok)
    cfg = ModelConfig(vocab_size=V, cell="gru", layers=1, hidden=H, embed=V)
    p = init_params(cfg, np.random.default_rng(7))
    p["embedding.weight"][:] = np.eye(V, dtype=np.float32)
    W_ih, W_hh, b_ih, b_hh = p.layer(0)
    u, q, nl = planted, tok.vocab.index('"'), tok.vocab.index("\n")
    for block in range(3):  # rows u of the r, z, n blocks read only the input (and n its own state)
        W_ih[block * H + u], W_hh[block * H + u], b_ih[block * H + u], b_hh[block * H + u] = 0, 0, 0, 0
    W_ih[u, :] = 20.0  # r = 1 ...
    W_ih[u, nl] = -20.0  # ... but 0 at a newline
    W_ih[H + u, :] = 20.0  # z = 1 keeps the state ...
    W_ih[H + u, [q, nl]] = -20.0  # ... a quote or a newline rewrites it with n
    W_ih[2 * H + u, q] = 5.0  # n = tanh(5 - 10 h): flips a saturated state, opens from 0
    W_ih[2 * H + u, nl] = -20.0  # a newline: n = -1, outside
    W_hh[2 * H + u, u] = -10.0
    arrays = dict(p.views)
    checkpoint.save(
        path,
        arrays,
        {"model": to_dict(cfg), "train": to_dict(TrainConfig(seq=16, batch=4)), "tokenizer": tok.to_json()},
    )
    return path


def test_find_neurons_ranks_a_planted_quote_unit_first(tmp_path):
    model_path = quote_unit_checkpoint(tmp_path / "quote.safetensors")
    (tmp_path / "t.txt").write_text(QUOTED)
    code, out, err = run_cli(
        "inspect", str(model_path), "--text", str(tmp_path / "t.txt"), "--find-neurons", "--json"
    )
    assert code == 0, err
    found = json.loads(out.splitlines()[-1])["find_neurons"]
    quote = [f for f in found if f["property"] == "quote"]
    assert (quote[0]["layer"], quote[0]["state"], quote[0]["unit"]) == (0, "h", 2)
    assert quote[0]["r"] > 0.95
    code, out, err = run_cli("inspect", str(model_path), "--text", str(tmp_path / "t.txt"), "--find-neurons")
    first = next(line for line in out.splitlines() if line.startswith("quote"))
    assert code == 0 and "0:2 h" in first and float(first.split()[-1]) > 0.95


def test_match_finds_the_other_quotes(tmp_path):
    model_path = quote_unit_checkpoint(tmp_path / "quote.safetensors")
    (tmp_path / "t.txt").write_text(QUOTED)
    start = QUOTED.index("no more")
    code, out, err = run_cli(
        "inspect",
        str(model_path),
        "--text",
        str(tmp_path / "t.txt"),
        "--match",
        f"{start}:{start + 7}",
        "--threshold",
        "0.9",
        "--json",
    )
    assert code == 0, err
    m = json.loads(out.splitlines()[-1])["match"]
    assert "0:2" in m["units"]
    texts = [s["text"] for s in m["spans"]]
    assert any(t.startswith('"yes, 42') or t.startswith("yes, 42") for t in texts), texts
    assert all(QUOTED[s["start"] : s["end"]] == s["text"] for s in m["spans"])


def test_match_span_rule():
    a = np.full((12, 3), -1.0, np.float32)
    a[2:5, :2] = 1.0  # the query: units 0 and 1 on
    a[7:9, 0] = 1.0  # half of them on
    a[10:12, :2] = 1.0  # both on
    units, spans = match_span({(0, "h"): a}, "h", 2, 5, 0.5)
    assert units == [(0, 0), (0, 1)]
    assert [(s.start, s.end, s.score) for s in spans] == [(10, 12, 1.0), (7, 9, 0.5)]


def test_inspect_text_outputs(tmp_path):
    model_path = quote_unit_checkpoint(tmp_path / "quote.safetensors")
    text = tmp_path / "t.txt"
    text.write_text(QUOTED[:80])
    code, out, err = run_cli("inspect", str(model_path), "--text", str(text))
    assert code == 0 and out.startswith(QUOTED[:20]) and "surprise" in out and "nats/token" in err
    code, out, err = run_cli(
        "inspect",
        str(model_path),
        "--text",
        "-",
        "--json",
        "--top",
        "2",
        "--neuron",
        "0:2",
        stdin=QUOTED[:80].encode(),
    )
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(records) == 80 and records[0]["loss"] is None
    assert "".join(r["token"] for r in records) == QUOTED[:80]
    assert all(len(r["top"]) == 2 and r["top"][0][1] >= r["top"][1][1] for r in records)
    inside = records[QUOTED.index("no more")]["acts"]["0:2:h"]
    outside = records[QUOTED.index("and left")]["acts"]["0:2:h"]
    assert inside > 0.99 and outside < -0.99
    code, out, _ = run_cli("inspect", str(model_path), "--text", str(text), "--top", "3")
    assert code == 0 and len(out.splitlines()) == 80 and "next:" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--neuron", "1:0"], "layers 0..0"),
        (["--neuron", "0:99"], "units 0..4"),
        (["--neuron", "x"], "two whole numbers"),
        (["--state", "c"], "only an LSTM"),
        (["--state", "q"], "h (hidden) or c"),
        (["--match", "5:2"], "START < END"),
        (["--match", "0:100000"], "past the text"),
        (["--top", "-1"], "--top"),
    ],
)
def test_inspect_text_refuses_bad_options_in_one_line(tmp_path, args, message):
    model_path = quote_unit_checkpoint(tmp_path / "quote.safetensors")
    (tmp_path / "t.txt").write_text(QUOTED)
    code, out, err = run_cli("inspect", str(model_path), "--text", str(tmp_path / "t.txt"), *args)
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_probe_options_need_a_text(tmp_path):
    model_path = quote_unit_checkpoint(tmp_path / "quote.safetensors")
    code, _, err = run_cli("inspect", str(model_path), "--find-neurons")
    assert code == 1 and "--text" in err
    code, out, _ = run_cli("inspect", str(model_path), "--json")
    assert code == 0 and json.loads(out)["model"]["cell"] == "gru"  # plain inspect is unchanged


def test_find_neurons_over_several_layers_and_states():
    rng = np.random.default_rng(1)
    acts = {
        (0, "h"): rng.standard_normal((200, 4)).astype(np.float32),
        (1, "c"): rng.standard_normal((200, 4)).astype(np.float32),
    }
    tokens = list(("ab(c)\n 1X " * 20))
    acts[(1, "c")][:, 2] = text_properties(tokens)[:, list(PROPERTIES).index("line_position")]
    found, absent = find_neurons(acts, tokens)
    assert absent == ["quote"]
    best = next(f for f in found if f.prop == "line_position")
    assert (best.layer, best.state, best.unit) == (1, "c", 2) and best.r > 0.999


def test_edge_inputs_of_the_review(tmp_path):
    """A vocabulary smaller than the top list, text that looks like rich markup, digits that are not
    ASCII, --find-neurons on a text too short for a correlation, options that need --text."""
    model_path = quote_unit_checkpoint(tmp_path / "quote.safetensors")
    text = tmp_path / "t.txt"
    text.write_text('he said "[/b] [bold]x[/bold]" and left.\n' * 2)
    code, out, err = run_cli("inspect", str(model_path), "--text", str(text), "--top", "100", "--json")
    assert code == 0, err
    assert len(json.loads(out.splitlines()[0])["top"]) == len(Tokenizer.build("char", QUOTED))  # all of them
    start = text.read_text().index("[/b]")
    code, out, err = run_cli(
        "inspect",
        str(model_path),
        "--text",
        str(text),
        "--match",
        f"{start}:{start + 4}",
        "--threshold",
        "-2",
    )
    assert code == 0 and "[/b]" in out, err
    for bad in (["--match", "\u00b2:5"], ["--neuron", "0:\u00b9"]):
        code, _, err = run_cli("inspect", str(model_path), "--text", str(text), *bad)
        assert_clean(code, err, allowed=(1,))
        assert "two whole numbers" in err
    (tmp_path / "short.txt").write_text("he")
    code, _, err = run_cli(
        "inspect", str(model_path), "--text", str(tmp_path / "short.txt"), "--find-neurons"
    )
    assert code == 1 and "20 tokens at least" in err
    code, _, err = run_cli("inspect", str(model_path), "--threshold", "0.5")
    assert code == 1 and "add --text FILE" in err
