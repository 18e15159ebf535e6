"""The model's forward and backward order, written once against the CPU backend's kernels.

Per layer: one matrix product projects the inputs of all T steps, a compiled driver runs the
recurrence, and after the backward time loop each weight gradient is one more product. Buffers
are kept between calls of the same (T, B) so the training loop allocates nothing large.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from rnncli.kernels import cpu as K
from rnncli.kernels.gemm import reads_rows
from rnncli.params import Params

NO_BIAS = np.zeros(0, np.float32)
EMPTY = np.zeros((0, 0), np.float32)


class Model:
    """A network (its Params) plus the scratch memory to run it on (T, B) windows."""

    def __init__(self, params: Params):
        self.params = params
        self.cfg = params.cfg
        self._work: dict[tuple[int, int], SimpleNamespace] = {}

    def zero_state(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        shape = (self.cfg.layers, batch, self.cfg.hidden)
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def _buffers(self, T: int, B: int) -> SimpleNamespace:
        """Scratch memory for a (T, B) window: views into buffers kept per batch size and grown to
        the longest window seen, so a shorter last window costs no new memory."""
        full = self._work.get(B)
        if full is None or full.T < T:
            if len(self._work) > 1:
                self._work.clear()
            c = self.cfg
            L, H, G = c.layers, c.hidden, c.gates * c.hidden
            A = 0 if c.cell == "rnn" else 4 * H
            C = H if c.cell == "lstm" else 0
            full = self._work[B] = SimpleNamespace(
                T=T,
                hs=np.zeros((L, T + 1, B, H), np.float32),  # row 0: h_0; rows 1..T: outputs
                cs=np.zeros((L, T + 1, B, C), np.float32),
                act=np.zeros((L, T, B, A), np.float32),
                gx=np.empty((T, B, G), np.float32),
                dgh=np.empty((T, B, G), np.float32) if c.cell == "gru" else None,
                gh=np.empty((B, G), np.float32),
                tmp=np.empty((B, H), np.float32),
                inputs=[None] * L,  # what each layer read, (T, B, I)
                W_hhT=[None] * L,  # each layer's W_hh.T, when a recurrent product reads it
                parts={},  # per-thread partial sums of weight gradients, by gradient shape
                logits=np.empty((T * B, c.vocab_size), np.float32),
                dlogits=np.empty((T * B, c.vocab_size), np.float32),
                d_out=np.empty((2, T * B, H), np.float32),  # gradients reaching layer outputs, ping-pong
                dropped=np.empty((L - 1 if c.dropout > 0 else 0, T, B, H), np.float32),  # outputs after dropout
                views={},
            )
        w = full.views.get(T)
        if w is None:
            w = full.views[T] = SimpleNamespace(
                hs=full.hs[:, : T + 1], cs=full.cs[:, : T + 1], act=full.act[:, :T], gx=full.gx[:T],
                dgh=None if full.dgh is None else full.dgh[:T], gh=full.gh, tmp=full.tmp,
                inputs=full.inputs, W_hhT=full.W_hhT, parts=full.parts, logits=full.logits[: T * B],
                dlogits=full.dlogits[: T * B], d_out=full.d_out[:, : T * B], dropped=full.dropped[:, :T],
            )
        return w

    def forward(self, ids, h0, c0, masks=None):
        """Top-layer outputs (T, B, H) for token ids (T, B); h0, c0 (L, B, H) are not modified.
        masks: None or L-1 inverted-dropout masks (T, B, H) for the outputs of all layers but the last."""
        p, c = self.params, self.cfg
        T, B = ids.shape
        check_ids(ids, c.vocab_size)
        w = self._buffers(T, B)
        G = c.gates * c.hidden
        for k in range(c.layers):
            W_ih, W_hh, b_ih, b_hh = p.layer(k)
            if k == 0 and self._by_table(T * B):
                # Layer 0 reads embedding rows, so its projection is a row of E W_ih^T + b_ih:
                # one small (V, G) product, then a gather, instead of a (T*B, G) product.
                table = self.layer0_table()
                K.gather_rows(table, ids.reshape(-1), w.gx.reshape(T * B, G), numba_threads())
            else:
                if k == 0:
                    x = p["embedding.weight"][ids]  # (T, B, E)
                w.inputs[k] = x
                K.matmul(x.reshape(T * B, -1), W_ih.T, b_ih, w.gx.reshape(T * B, G), numba_threads())
            w.hs[k, 0] = h0[k]
            if c.cell == "lstm":
                w.cs[k, 0] = c0[k]
            # W_hh.T only if this direction's products read it (a 2048 x 512 transpose costs ~4 ms)
            w.W_hhT[k] = EMPTY if reads_rows(*W_hh.shape) else _transposed(W_hh)
            K.sequence_forward(c.cell_code, w.gx, W_hh, w.W_hhT[k], b_hh, w.hs[k], w.cs[k], w.act[k], w.gh,
                               numba_threads())
            x = w.hs[k, 1:]
            if masks is not None and k < c.layers - 1:
                x = np.multiply(x, masks[k], out=w.dropped[k]) if len(w.dropped) else x * masks[k]
        return x

    def final_state(self, T: int, B: int) -> tuple[np.ndarray, np.ndarray]:
        """h_T, c_T of the last forward on a (T, B) window, as fresh arrays."""
        w = self._buffers(T, B)
        h = w.hs[:, T].copy()
        c = w.cs[:, T].copy() if self.cfg.cell == "lstm" else np.zeros_like(h)
        return h, c

    def _head(self, top, w) -> np.ndarray:
        """Logits (N, V) of top-layer outputs (N, H), into w.logits."""
        K.matmul(top, self.params["head.weight"].T, self.params["head.bias"], w.logits, numba_threads())
        return w.logits

    def logits(self, ids, h0, c0) -> np.ndarray:
        """Logits (T, B, V) of the next token after each position (a view into scratch memory)."""
        T, B = ids.shape
        top = self.forward(ids, h0, c0).reshape(T * B, -1)
        return self._head(top, self._buffers(T, B)).reshape(T, B, -1)

    def loss(self, ids, targets, h0, c0) -> float:
        """Summed cross-entropy (nats, float) of targets (T, B) given ids (T, B)."""
        T, B = ids.shape
        check_ids(targets, self.cfg.vocab_size)
        logits = self.logits(ids, h0, c0).reshape(T * B, -1)
        return K.softmax_xent(logits, targets.reshape(-1), self._buffers(T, B).dlogits, numba_threads())

    def layer0_table(self) -> np.ndarray:
        """(V, G): row v is layer 0's input projection of token v, E[v] W_ih0^T + b_ih0."""
        W_ih, _, b_ih, _ = self.params.layer(0)
        return self._product(self.params["embedding.weight"], W_ih.T, b_ih)

    def _by_table(self, n_tokens: int) -> bool:
        """Whether layer 0 works through per-token tables (when the vocabulary is the smaller)."""
        return self.cfg.vocab_size <= n_tokens

    @staticmethod
    def _product(a, b, bias=NO_BIAS):
        out = np.empty((a.shape[0], b.shape[1]), np.float32)
        K.matmul(a, b, bias, out, numba_threads())
        return out

    @staticmethod
    def _weight_grad(w, d, x, g_weight, g_bias):
        """g_weight = d.T @ x and g_bias = column sums of d, over the N rows of d (N, G), x (N, I)."""
        scratch = w.parts.get(g_weight.shape)
        if scratch is None:
            n = numba_threads()
            scratch = w.parts[g_weight.shape] = (np.empty((n,) + g_weight.shape, np.float32),
                                                 np.empty((n, g_weight.shape[0]), np.float32))
        K.matmul_tn(d, np.ascontiguousarray(x), g_weight, g_bias, *scratch)

    def loss_and_grads(self, ids, targets, h0, c0, grads: Params, masks=None) -> float:
        """Mean cross-entropy of the window; writes the gradient of every parameter into `grads`."""
        p, c = self.params, self.cfg
        T, B = ids.shape
        N, G, L = T * B, c.gates * c.hidden, c.layers
        check_ids(targets, c.vocab_size)
        w = self._buffers(T, B)
        top = self.forward(ids, h0, c0, masks).reshape(N, -1)
        loss = K.softmax_xent(self._head(top, w), targets.reshape(-1), w.dlogits, numba_threads()) / N
        d = w.dlogits
        d *= np.float32(1.0 / N)
        self._weight_grad(w, d, top, grads["head.weight"], grads["head.bias"])
        K.matmul(d, p["head.weight"], NO_BIAS, w.d_out[L % 2], numba_threads())
        d_out = w.d_out[L % 2].reshape(T, B, -1)
        for k in reversed(range(L)):
            W_ih, W_hh, _, _ = p.layer(k)
            gW_ih, gW_hh, gb_ih, gb_hh = grads.layer(k)
            if masks is not None and k < L - 1:
                d_out *= masks[k]
            dh_next = np.zeros((B, c.hidden), np.float32)
            dc_next = np.zeros_like(dh_next)
            dgx = w.gx  # the forward projections are no longer needed: reuse their memory
            dgh = w.dgh if w.dgh is not None else dgx
            if len(w.W_hhT[k]) == 0 and reads_rows(W_hh.shape[1], W_hh.shape[0]):
                # for the dot-product kernel only: rows padded off multiples of 4 KiB, which would
                # map a tile's eight rows onto the same L1 sets
                w.W_hhT[k] = _transposed(W_hh, pad=16)
            K.sequence_backward(
                c.cell_code, W_hh, w.W_hhT[k], w.hs[k], w.cs[k], w.act[k], d_out, dh_next, dc_next, dgx, dgh, w.tmp,
                numba_threads(),
            )
            dgx2, dgh2 = dgx.reshape(N, G), dgh.reshape(N, G)
            self._weight_grad(w, dgh2, w.hs[k, :T].reshape(N, -1), gW_hh, gb_hh)
            if k == 0 and self._by_table(N):
                # Sum dgx by token first (V, G); then every product is V rows, not N.
                emb = p["embedding.weight"]
                per_token = np.empty((c.vocab_size, G), np.float32)
                K.scatter_rows(ids.reshape(-1), dgx2, per_token, numba_threads())
                self._weight_grad(w, per_token, emb, gW_ih, gb_ih)
                K.matmul(per_token, W_ih, NO_BIAS, grads["embedding.weight"], numba_threads())
                return float(loss)
            self._weight_grad(w, dgx2, w.inputs[k].reshape(N, -1), gW_ih, gb_ih)
            if k > 0:  # into the buffer the layer above has finished with
                K.matmul(dgx2, W_ih, NO_BIAS, w.d_out[k % 2], numba_threads())
                d_out = w.d_out[k % 2].reshape(T, B, -1)
            else:
                d_out = self._product(dgx2, W_ih).reshape(T, B, -1)
        g_emb = grads["embedding.weight"]
        g_emb[...] = 0.0
        K.embedding_backward(ids.reshape(-1), d_out.reshape(N, -1), g_emb)
        return float(loss)


def workspace_bytes(cfg, T: int, B: int, training: bool, threads: int) -> int:
    """About the bytes that running (T, B) windows takes: Model._buffers, the layer-0 table and
    the transposes, the parameters and, when training, their gradients, Adam's moments, the best
    weights and the per-thread partial sums. For refusing what will not fit, before allocating."""
    L, H, G, V, E = cfg.layers, cfg.hidden, cfg.gates * cfg.hidden, cfg.vocab_size, cfg.embed
    A = 0 if cfg.cell == "rnn" else 4 * H
    C = H if cfg.cell == "lstm" else 0
    N = T * B
    floats = L * (T + 1) * B * (H + C) + L * N * A + N * G * (2 if cfg.cell == "gru" else 1) + B * (G + H)
    floats += N * (2 * V + 2 * H + E) + (L - 1) * N * H + L * H * (G + 16) + V * G
    floats += cfg.n_params * (5 if training else 1)
    if training:
        floats += N * max(E, H) * (L + 1) + threads * G * (max(E, H) + 1) + V * G
    return 4 * floats


def check_ids(ids: np.ndarray, vocab_size: int) -> None:
    """Compiled code has no bounds checks, so no id outside [0, vocab) may reach it. Ids come from
    a tokenizer that validate.py matched to the model; this holds the line at the kernels' door."""
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        from rnncli.errors import RnncliError

        raise RnncliError(f"token ids {ids.min()}..{ids.max()} fall outside the vocabulary [0, {vocab_size})")


def _transposed(W_hh, pad: int = 0):
    """W_hh.T, C-contiguous, its rows `pad` floats longer than W_hh's columns (unused space)."""
    G, H = W_hh.shape
    out = np.empty((H, G + pad), np.float32)
    out[:, :G] = W_hh.T
    return out


def numba_threads() -> int:
    import numba

    return numba.get_num_threads()


def use_threads(n: int | None) -> None:
    """Run kernels on n threads (None: all cores). BLAS itself runs single-threaded: each kernel
    thread calls it on its own share of the work (see kernels/cpu.py)."""
    import numba
    import scipy.linalg.cython_blas  # noqa: F401  (load the BLAS Numba calls, so that it is limited too)
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(thread_count(n))
    threadpool_limits(1, user_api="blas")


def thread_count(n: int | None) -> int:
    """The kernel threads a run asking for n (None: all cores) gets."""
    import os

    import numba

    return min(n or os.cpu_count() or 1, numba.config.NUMBA_NUM_THREADS)


def load_model(path: str):
    """(Model with the checkpoint's best weights, Tokenizer, metadata with configs decoded), after
    validate.py has checked every setting, the vocabulary and every tensor."""
    from rnncli import validate
    from rnncli.data import Tokenizer

    contents, tensors = validate.load(path)
    meta = dict(contents.meta, model=contents.model, train=contents.train)
    return Model(Params(contents.model).load(tensors)), Tokenizer.from_json(contents.tokenizer), meta
