"""The same char-rnn training run in PyTorch, for side-by-side quality and speed (torch is only a
tool here, never an rnncli dependency):

    python benchmarks/torch_charrnn.py ../shared/data/tinyshakespeare.txt --cell lstm --steps 2000

Mirrors `rnncli train`: char vocabulary (sorted code points), last 5% held out, B contiguous streams
read T at a time with hidden state carried, Adam, global-norm clipping, validation every 200 steps
with the best loss kept. Prints one JSON object.
"""

import argparse
import json
import time

import numpy as np
import torch

from rnncli.model.config import ModelConfig
from rnncli.run.bench_torch import TorchNet, detach


def streams(ids, B, T):
    L = (len(ids) - 1) // B
    x = torch.from_numpy(ids[: L * B].reshape(B, L).astype(np.int64))
    y = torch.from_numpy(ids[1 : L * B + 1].reshape(B, L).astype(np.int64))
    return x, y, L // T


def zero_state(cell, layers, B, H):
    h = torch.zeros(layers, B, H)
    return (h, h.clone()) if cell == "lstm" else h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--seq", type=int, default=50)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    text = open(a.corpus, encoding="utf-8").read()
    vocab = sorted(set(text))
    index = {ch: i for i, ch in enumerate(vocab)}
    ids = np.array([index[ch] for ch in text], np.int32)
    n_val = round(len(ids) * 0.05)
    x, y, windows = streams(ids[: len(ids) - n_val], a.batch, a.seq)
    vx, vy, vwindows = streams(ids[len(ids) - n_val :], min(a.batch, (n_val - 1) // a.seq), a.seq)
    net = TorchNet(
        ModelConfig(vocab_size=len(vocab), cell=a.cell, layers=a.layers, hidden=a.hidden, embed=a.embed)
    )
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    ce = torch.nn.functional.cross_entropy

    def validate():
        net.eval()
        total, count = 0.0, 0
        state = zero_state(a.cell, a.layers, vx.shape[0], a.hidden)
        with torch.no_grad():
            for w in range(vwindows + 1):
                s = slice(w * a.seq, min((w + 1) * a.seq, vx.shape[1]))
                if s.start >= s.stop:
                    break
                logits, state = net(vx[:, s].T.contiguous(), state)
                total += ce(logits.reshape(-1, len(vocab)), vy[:, s].T.reshape(-1), reduction="sum").item()
                count += vx[:, s].numel()
        net.train()
        return total / count

    state = zero_state(a.cell, a.layers, a.batch, a.hidden)
    best, train_time, w = float("inf"), 0.0, 0
    start = time.perf_counter()
    for step in range(1, a.steps + 1):
        t0 = time.perf_counter()
        if w == windows:
            w, state = 0, zero_state(a.cell, a.layers, a.batch, a.hidden)
        s = slice(w * a.seq, (w + 1) * a.seq)
        w += 1
        logits, state = net(x[:, s].T.contiguous(), detach(state))
        loss = ce(logits.reshape(-1, len(vocab)), y[:, s].T.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), a.clip)
        opt.step()
        train_time += time.perf_counter() - t0
        if step % a.eval_every == 0 or step == a.steps:
            best = min(best, validate())
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "impl": f"torch {torch.__version__}",
                "cell": a.cell,
                "best_val_loss": best,
                "elapsed_s": elapsed,
                "train_tokens_per_s": a.steps * a.batch * a.seq / train_time,
            }
        )
    )


if __name__ == "__main__":
    main()
