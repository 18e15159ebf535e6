"""What the samplers cost when streaming: single-stream generation with min-p and the repetition
penalty on, against plain sampling, side by side in one process (each pair neighbours in time).

    python benchmarks/samplers.py [CONFIG ...]     # default: small-rnn small-gru small-lstm medium-lstm
"""

import statistics
import sys
import time

import numpy as np

from rnncli.model.config import SampleConfig
from rnncli.model.model import Model
from rnncli.model.params import init_params
from rnncli.run.bench import CONFIGS
from rnncli.run.sample import Decoder

PLAIN = SampleConfig(rng_seed=0)
BOTH = SampleConfig(rng_seed=0, min_p=0.05, repeat_penalty=1.3, repeat_last_n=64)


def rate(model, cfg, n: int) -> float:
    dec = Decoder(model, cfg)
    dec.prime([np.array([0])])
    t = time.perf_counter()
    for _ in dec.tokens(n):
        pass
    return n / (time.perf_counter() - t)


def main(names):
    for name in names:
        bench = CONFIGS[name]
        model = Model(init_params(bench.model, np.random.default_rng(0)))
        n = bench.gen_chars
        rate(model, PLAIN, 100), rate(model, BOTH, 100)  # compile, warm caches
        pairs = [(rate(model, PLAIN, n), rate(model, BOTH, n)) for _ in range(7)]
        ratio = statistics.median(b / a for a, b in pairs)
        print(
            f"{name:<12} plain {statistics.median(a for a, _ in pairs):>10,.0f} tok/s   "
            f"min-p + penalty {statistics.median(b for _, b in pairs):>10,.0f} tok/s   ratio {ratio:.3f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:] or ["small-rnn", "small-gru", "small-lstm", "medium-lstm"])
