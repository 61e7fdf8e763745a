"""One-step generation for a stack of cells: (state, character ids) → (new state, logits).

Notation: B batch (rows generated at once), H hidden, G·H gates, V vocabulary, L layers.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from lstmgen.networks.layers import input_bias, input_table, rec_params


class Stepper:
    """One step at a time, allocation-free.

    Precomputes the first layer's (V, G·H) input table (bias folded in) and, for the other
    layers, a fused [W_ih | W_hh] matrix acting on a stacked [x; h] buffer (a cell whose step
    needs W_hh h alone, ``CellSpec.fused_step`` False — the GRU, where r gates W_hn h — keeps them
    apart). All buffers live in the stepper and are reused; one step is one small GEMM per layer,
    the cell's elementwise step (``CellSpec.step``, shared with the sequence forward) and the
    decoder. ``state`` is the per-layer state, updated in place by ``step``.
    """

    def __init__(self, network, params: dict, batch: int = 1):
        cfg, spec = network.cfg, network.spec
        self.cfg, self.spec, self.batch = cfg, spec, batch
        L, H, B, dt = cfg.layers, cfg.hidden, batch, cfg.np_dtype
        G = spec.gates * H
        self.table = np.ascontiguousarray(input_table(params, input_bias(spec, params, 0)).T)  # (V, G·H): a row per id
        self.rec = [rec_params(spec, params, k) for k in range(L)]
        self.fused = spec.fused_step
        self.w, self.b = [], []  # per layer: the matrix applied to [x; h] (or h) and the bias
        for k in range(L):
            w_hh = params[f"rnn.weight_hh_l{k}"]
            if k == 0 or not self.fused:
                self.w.append(w_hh)
            else:
                self.w.append(np.ascontiguousarray(np.concatenate([params[f"rnn.weight_ih_l{k}"], w_hh], axis=1)))
            self.b.append(None if k == 0 else input_bias(spec, params, k)[:, None])
        self.w_ih = [None] + [params[f"rnn.weight_ih_l{k}"] for k in range(1, L)]
        self.w_dec, self.b_dec = params["decoder.weight"], params["decoder.bias"][:, None]
        self.z = [np.zeros((2 * H if k > 0 else H, B), dtype=dt) for k in range(L)]  # [x; h] (layer 0: h)
        self.c = [np.zeros((H, B), dtype=dt) for _ in range(L)]
        self.a = np.empty((G, B), dtype=dt)
        self.ah = np.empty((G, B), dtype=dt)
        self.xp = np.empty((G, B), dtype=dt)
        self.scratch = SimpleNamespace(tmp=np.empty((H, B), dtype=dt), tc=np.empty((H, B), dtype=dt),
                                       hn=np.empty((H, B), dtype=dt), gates=self.a)
        self.logits_buf = np.empty((cfg.vocab_size, B), dtype=dt)
        self.reset()

    def _h(self, k: int) -> np.ndarray:
        return self.z[k][self.cfg.hidden :] if k > 0 else self.z[0]

    @property
    def state(self):
        """Per layer, (h, c) or (h,), as (H, B) views of the stepper's buffers."""
        n = self.spec.n_states
        return [(self._h(k), self.c[k])[:n] for k in range(self.cfg.layers)]

    def reset(self, state=None) -> None:
        for k in range(self.cfg.layers):
            self._h(k)[...] = 0.0 if state is None else state[k][0]
            self.c[k][...] = 0.0 if state is None or len(state[k]) < 2 else state[k][1]

    def step(self, ids) -> np.ndarray:
        """Feed character ids (B,) — or one int when B = 1 — and return the next-character logits
        (B, V) (a reused buffer)."""
        H = self.cfg.hidden
        if isinstance(ids, int):
            x0 = self.table[ids][:, None]  # (G·H, 1)
        else:
            x0 = self.table[np.asarray(ids).reshape(self.batch)].T  # (G·H, B)
        step, s = self.spec.step, self.scratch
        for k in range(self.cfg.layers):
            h = self._h(k)
            if k > 0:
                self.z[k][:H] = self._h(k - 1)  # this layer's input
            if not self.fused:  # a = W_ih x + b and ah = W_hh h, apart
                if k == 0:
                    a = x0
                else:
                    a = np.matmul(self.w_ih[k], self.z[k][:H], out=self.xp)
                    a += self.b[k]
                np.matmul(self.w[k], h, out=self.ah)
                step(a, self.ah, h, self.c[k], self.rec[k], s)
                continue
            a = np.matmul(self.w[k], self.z[k], out=self.a)  # W_hh h (layer 0) or [W_ih | W_hh] [x; h]
            a += x0 if k == 0 else self.b[k]
            step(a, None, h, self.c[k], self.rec[k], s)
        np.matmul(self.w_dec, self._h(self.cfg.layers - 1), out=self.logits_buf)  # (V, B)
        self.logits_buf += self.b_dec
        return self.logits_buf.T
