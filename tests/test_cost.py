"""The one cost model (ModelConfig.macs_per_token) pinned by hand for a small model of each cell,
and read alike by bench's GFLOP/s and the recipe's speed. No kernels run here."""

import math

import numpy as np
import pytest

from rnncli.model.config import ModelConfig
from rnncli.model.recipe import Speed
from rnncli.run.bench import CONFIGS, BenchConfig

# V 10, E 4, H 3, two layers; G = gates x H: rnn 3, gru 9, lstm 12. A forward token's multiply-adds:
#   layer 0: W_hh G*H, and W_ih G*E nominally (as PyTorch runs it), or as rnncli runs it a (V, G)
#            table, V*E*G once a window of W tokens (V*E*G/W a token), when W >= V
#   layer 1: W_ih G*H + W_hh G*H;  head: V*H = 30
#                nominal                      W = 20 (table)              W = inf (generation)
#   rnn   3*3 + 3*4 + 18 + 30 = 69     9 + 10*4*3/20  + 18 + 30 = 63     9 + 18 + 30 = 57
#   gru   27  + 36  + 54 + 30 = 147    27 + 10*4*9/20 + 54 + 30 = 129    27 + 54 + 30 = 111
#   lstm  36  + 48  + 72 + 30 = 186    36 + 10*4*12/20 + 72 + 30 = 162   36 + 72 + 30 = 138
# Training is 3x (each product's two gradient products: the input's and the weight's).
COUNTS = {"rnn": (69, 63, 57), "gru": (147, 129, 111), "lstm": (186, 162, 138)}


@pytest.mark.parametrize("cell", sorted(COUNTS))
def test_each_cells_count_by_hand_and_bench_and_the_recipe_read_it(cell):
    nominal, table, generating = COUNTS[cell]
    cfg = ModelConfig(vocab_size=10, cell=cell, layers=2, hidden=3, embed=4)
    assert cfg.macs_per_token(None) == nominal
    assert cfg.macs_per_token(20) == table
    assert cfg.macs_per_token(9) == nominal  # (a window shorter than the vocabulary: no table)
    assert cfg.macs_per_token() == cfg.macs_per_token(math.inf) == generating
    assert cfg.macs_per_token(20, training=True) == 3 * table
    bench = BenchConfig("t", cfg, batch=4, seq=5, gen_chars=1)  # windows of 20 tokens
    assert bench.flops_per_token("train") == 2 * 3 * table and bench.flops_per_token("eval") == 2 * table
    assert bench.flops_per_token("generate") == bench.flops_per_token("generate-batch") == 2 * generating
    for what in ("train", "eval", "generate"):
        assert bench.flops_per_token(what, executed=False) == 2 * nominal * (3 if what == "train" else 1)
    # the recipe's seconds a token at one multiply-add a second: the same count, the window it trains on
    assert Speed(1.0).token_seconds(cfg, 20) == 3 * table
    assert Speed(1.0).token_seconds(cfg, 40, window=20) == 3 * table  # (two ranks: each makes its table)


def test_the_count_switches_to_the_table_exactly_where_the_model_does():
    from rnncli.model.model import Model
    from rnncli.model.params import init_params

    cfg = ModelConfig(vocab_size=65, cell="lstm", layers=3, hidden=128, embed=64)
    G, E, V = 4 * 128, 64, 65
    nominal = cfg.macs_per_token(None)
    model = Model(init_params(cfg, np.random.default_rng(0)))
    for window in (V - 1, V, 2500):
        table = nominal - G * E + V * E * G / window
        assert cfg.macs_per_token(window) == (table if model._by_table(window) else nominal)
    small = CONFIGS["small-lstm"]  # (2 layers, batch 50 x seq 50)
    assert small.flops_per_token("train") == 2 * small.model.macs_per_token(50 * 50, training=True)
