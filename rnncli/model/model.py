"""The model's forward and backward order, written once against the kernel API (kernels/cpu/backend.py,
kernels/cuda/backend.py: the same names on NumPy or device arrays).

Per layer: one matrix product projects the inputs of all T steps, a compiled driver runs the
recurrence, and after the backward time loop each weight gradient is one more product. Buffers
are kept between calls of the same (T, B) so the training loop allocates nothing large. Token ids,
states and dropout masks may come in as NumPy arrays; they are moved to the backend here.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from rnncli.model.params import Params


class Model:
    """A network (its Params, on a backend) plus the scratch memory to run it on (T, B) windows.
    weights: the format generation reads its large matrices in (kernels/formats.py: f32, bf16,
    int8); a model loaded in a narrow format holds them round-tripped (store/load.py)."""

    def __init__(self, params: Params, backend=None, weights: str = "f32"):
        if backend is None:
            from rnncli.kernels.cpu import backend
        self.K, self.weights = backend, weights
        self.params = params if params.backend is backend else params.to(backend)
        self.cfg = params.cfg
        self.scratch = backend.Scratch()
        self._work: dict[int, SimpleNamespace] = {}
        self._zero = None

    def zero_state(self, batch: int):
        shape = (self.cfg.layers, batch, self.cfg.hidden)
        return self.K.zeros(shape), self.K.zeros(shape)

    def _buffers(self, T: int, B: int) -> SimpleNamespace:
        """Scratch memory for a (T, B) window: views into buffers kept per batch size and grown to
        the longest window seen, so a shorter last window costs no new memory."""
        full = self._work.get(B)
        if full is None or full.T < T:
            if len(self._work) > 1:
                self._work.clear()
            c, z = self.cfg, self.K.empty
            L, H, G, A, C = c.layers, c.hidden, c.gate_width, c.act_width, c.cstate_width
            V, E, N = c.vocab_size, c.embed, T * B
            full = self._work[B] = SimpleNamespace(
                T=T,
                hs=self.K.zeros((L, T + 1, B, H)),  # row 0: h_0; rows 1..T: outputs
                cs=self.K.zeros((L, T + 1, B, C)),
                act=z((L, T, B, A)),
                gx=z((T, B, G)),
                dgh=z((T, B, G)) if c.apart else None,
                gh=z((B, G)),
                tmp=z((B, H)),
                dh=z((B, H)),
                dc=z((B, H)),
                x0=z((T, B, E)),  # layer 0's inputs, when it reads embedding rows
                inputs=[None] * L,  # what each layer read, (T, B, I)
                logits=z((N, V)),
                dlogits=z((N, V)),
                d_out=z((2, N, H)),  # gradients reaching layer outputs, ping-pong
                d_x0=z((N, E)),  # the gradient reaching the embedding rows
                dropped=z((L - 1, T, B, H)),  # outputs after dropout (when masks are given)
                per_token=z((V, G)),
                table=z((V, G)),
                views={},
            )
        w = full.views.get(T)
        if w is None:
            w = full.views[T] = SimpleNamespace(
                hs=full.hs[:, : T + 1],
                cs=full.cs[:, : T + 1],
                act=full.act[:, :T],
                gx=full.gx[:T],
                dgh=None if full.dgh is None else full.dgh[:T],
                gh=full.gh,
                tmp=full.tmp,
                dh=full.dh,
                dc=full.dc,
                x0=full.x0[:T],
                inputs=full.inputs,
                logits=full.logits[: T * B],
                dlogits=full.dlogits[: T * B],
                d_out=full.d_out[:, : T * B],
                d_x0=full.d_x0[: T * B],
                dropped=full.dropped[:, :T],
                per_token=full.per_token,
                table=full.table,
            )
        return w

    def forward(self, ids, h0, c0, masks=None):
        """Top-layer outputs (T, B, H) for token ids (T, B); h0, c0 (L, B, H) are not modified.
        masks: None or L-1 inverted-dropout masks (T, B, H) for the outputs of all layers but the last."""
        p, c, K = self.params, self.cfg, self.K
        T, B = ids.shape
        check_ids(ids, c.vocab_size)
        flat_ids = self._flat(ids)
        h0, c0 = K.asarray(h0), K.asarray(c0)
        masks = None if masks is None else K.asarray(masks)
        w = self._buffers(T, B)
        G = c.gate_width
        for k in range(c.layers):
            W_ih, W_hh, b_ih, b_hh = p.layer(k)
            if k == 0 and self._by_table(T * B):
                # Layer 0 reads embedding rows, so its projection is a row of E W_ih^T + b_ih:
                # one small (V, G) product, then a gather, instead of a (T*B, G) product.
                K.gather_rows(self.layer0_table(w.table), flat_ids, w.gx.reshape(T * B, G))
            else:
                if k == 0:
                    K.gather_rows(p["embedding.weight"], flat_ids, w.x0.reshape(T * B, -1))
                    x = w.x0
                w.inputs[k] = x
                K.matmul(x.reshape(T * B, -1), K.transpose_view(W_ih), b_ih, w.gx.reshape(T * B, G))
            K.copy_into(w.hs[k, 0], h0[k])
            if c.cstate_width:
                K.copy_into(w.cs[k, 0], c0[k])
            K.sequence_forward(
                self.scratch, k, c.cell_code, w.gx, W_hh, b_hh, w.hs[k], w.cs[k], w.act[k], w.gh
            )
            x = w.hs[k, 1:]
            if masks is not None and k < c.layers - 1:
                K.multiply(x, masks[k], w.dropped[k])
                x = w.dropped[k]
        return x

    def final_state(self, T: int, B: int):
        """h_T, c_T of the last forward on a (T, B) window, as fresh arrays."""
        w = self._buffers(T, B)
        h = self.K.copy(w.hs[:, T])
        c = self.K.copy(w.cs[:, T]) if self.cfg.cstate_width else self.K.zeros(h.shape)
        return h, c

    def states(self, T: int, B: int):
        """Views (L, T, B, H) of the hidden and (LSTM) cell states after each step of the last
        forward on a (T, B) window: scratch memory, overwritten by the next forward."""
        w = self._buffers(T, B)
        return w.hs[:, 1:], w.cs[:, 1:]

    def _head(self, top, w):
        """Logits (N, V) of top-layer outputs (N, H), into w.logits."""
        self.K.matmul(
            top, self.K.transpose_view(self.params["head.weight"]), self.params["head.bias"], w.logits
        )
        return w.logits

    def logits(self, ids, h0, c0):
        """Logits (T, B, V) of the next token after each position (a view into scratch memory)."""
        T, B = ids.shape
        top = self.forward(ids, h0, c0).reshape(T * B, -1)
        return self._head(top, self._buffers(T, B)).reshape(T, B, -1)

    def loss(self, ids, targets, h0, c0) -> float:
        """Summed cross-entropy (nats, float) of targets (T, B) given ids (T, B)."""
        T, B = ids.shape
        check_ids(targets, self.cfg.vocab_size)
        logits = self.logits(ids, h0, c0).reshape(T * B, -1)
        return self.K.softmax_xent(logits, self._flat(targets), self._buffers(T, B).dlogits, 1.0)

    def _flat(self, ids):
        """Token ids (T, B) as the flat int64 array the kernels read, on the backend."""
        return self.K.asarray(np.ascontiguousarray(ids, np.int64).reshape(-1))

    def layer0_table(self, out=None):
        """(V, G): row v is layer 0's input projection of token v, E[v] W_ih0^T + b_ih0."""
        W_ih, _, b_ih, _ = self.params.layer(0)
        out = self.K.empty((self.cfg.vocab_size, self.cfg.gate_width)) if out is None else out
        self.K.matmul(self.params["embedding.weight"], self.K.transpose_view(W_ih), b_ih, out)
        return out

    def _by_table(self, n_tokens: int) -> bool:
        """Whether layer 0 works through per-token tables (when the vocabulary is the smaller)."""
        return self.cfg.vocab_size <= n_tokens

    def loss_and_grads(self, ids, targets, h0, c0, grads: Params, masks=None) -> float:
        """Mean cross-entropy of the window; writes the gradient of every parameter into `grads`."""
        p, c, K = self.params, self.cfg, self.K
        T, B = ids.shape
        N, G, L = T * B, c.gate_width, c.layers
        check_ids(targets, c.vocab_size)
        masks = None if masks is None else K.asarray(masks)
        w = self._buffers(T, B)
        top = self.forward(ids, h0, c0, masks).reshape(N, -1)
        d = w.dlogits
        loss = K.softmax_xent(self._head(top, w), self._flat(targets), d, 1.0 / N) / N
        K.weight_grad(self.scratch, d, top, grads["head.weight"], grads["head.bias"])
        K.matmul(d, p["head.weight"], None, w.d_out[L % 2])
        d_out = w.d_out[L % 2].reshape(T, B, -1)
        flat_ids = self._flat(ids)  # (for the embedding's gradient, after the loop)
        for k in reversed(range(L)):
            W_ih, W_hh, _, _ = p.layer(k)
            gW_ih, gW_hh, gb_ih, gb_hh = grads.layer(k)
            if masks is not None and k < L - 1:
                K.multiply(d_out, masks[k], d_out)
            dh_next, dc_next = w.dh, w.dc
            K.copy_into(dh_next, self._zeros(B))
            K.copy_into(dc_next, self._zeros(B))
            dgx = w.gx  # the forward projections are no longer needed: reuse their memory
            dgh = w.dgh if w.dgh is not None else dgx
            K.sequence_backward(
                self.scratch,
                k,
                c.cell_code,
                W_hh,
                w.hs[k],
                w.cs[k],
                w.act[k],
                d_out,
                dh_next,
                dc_next,
                dgx,
                dgh,
                w.tmp,
            )
            dgx2, dgh2 = dgx.reshape(N, G), dgh.reshape(N, G)
            K.weight_grad(self.scratch, dgh2, w.hs[k, :T].reshape(N, -1), gW_hh, gb_hh)
            if k == 0 and self._by_table(N):
                # Sum dgx by token first (V, G); then every product is V rows, not N.
                K.scatter_rows(flat_ids, dgx2, w.per_token)
                K.weight_grad(self.scratch, w.per_token, p["embedding.weight"], gW_ih, gb_ih)
                K.matmul(w.per_token, W_ih, None, grads["embedding.weight"])
                return float(loss)
            K.weight_grad(self.scratch, dgx2, w.inputs[k].reshape(N, -1), gW_ih, gb_ih)
            # into the buffer the layer above has finished with (layer 0: the embedding's gradient)
            into = w.d_out[k % 2] if k > 0 else w.d_x0
            K.matmul(dgx2, W_ih, None, into)
            d_out = into.reshape(T, B, -1)
        K.embedding_backward(flat_ids, d_out.reshape(N, -1), grads["embedding.weight"])
        return float(loss)

    def _zeros(self, B: int):
        """A (B, H) array of zeros, made once: the gradients that enter a layer's last step."""
        if self._zero is None or self._zero.shape[0] != B:
            self._zero = self.K.zeros((B, self.cfg.hidden))
        return self._zero


def workspace_bytes(K, cfg, T: int, B: int, training: bool, threads: int | None) -> int:
    """About the bytes that running (T, B) windows on backend K with `threads` (None: all cores)
    takes: Model._buffers, the layer-0 table, the parameters and, when training, their gradients,
    Adam's moments and the best weights; plus what the backend keeps of its own (K.scratch_bytes:
    the transposes, per-thread partial sums). For refusing what will not fit, before allocating."""
    L, H, G, V, E = cfg.layers, cfg.hidden, cfg.gate_width, cfg.vocab_size, cfg.embed
    A, C, N = cfg.act_width, cfg.cstate_width, T * B
    floats = L * (T + 1) * B * (H + C) + L * N * A + N * G * (2 if cfg.apart else 1) + B * (G + 4 * H)
    floats += N * (2 * V + 2 * H + 2 * E) + (L - 1) * N * H + 2 * V * G
    floats += cfg.n_params * (5 if training else 1)
    if training:
        floats += N * max(E, H) * (L + 1) + V * G
    return 4 * floats + K.scratch_bytes(cfg, T, B, training, threads)


def check_ids(ids: np.ndarray, vocab_size: int) -> None:
    """Compiled code has no bounds checks, so no id outside [0, vocab) may reach it. Ids come from
    a tokenizer that validate.py matched to the model; this holds the line at the kernels' door."""
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        from rnncli.base.errors import RnncliError

        raise RnncliError(f"token ids {ids.min()}..{ids.max()} fall outside the vocabulary [0, {vocab_size})")
