"""The Jordan network: the model's own previous output is read back in at the next step.

Layer 0 (Jordan 1986):   h⁰_t = tanh(W_ih x_t + b_ih + W_yh y_{t−1} + b_yh)
layers k ≥ 1 (Elman):    hᵏ_t = tanh(W_ih hᵏ⁻¹_t + b_ih + W_hh hᵏ_{t−1} + b_hh)
output:                  y_t = softmax(W_dec · drop(h^{L−1}_t) + b_dec)

y_{t−1} is the next-character distribution the model gave at the previous step — the same one
the loss at t−1 scores, computed from the same dropout-masked top state (zeros before the first
character of a text, carried across training batches like any state). Because layer 0 at t needs
the top layer at t−1, the whole stack runs step by step (no layer-at-a-time sequence pass), and
backpropagation goes through the feedback exactly: the gradient reaching y_{t−1} enters the
logits at t−1 through the softmax's Jacobian, dz = y ⊙ (dy − ⟨y, dy⟩), and adds to the loss's.

Notation as in ``networks.layers``: B batch, T time, E embedding, H hidden, V vocabulary, L layers.
State per layer: layer 0 (h (H, B), y (V, B)); layers k ≥ 1 (h (H, B),).
Parameters: rnn.weight_ih_l0 (H, E), rnn.weight_yh_l0 (H, V), rnn.bias_ih_l0, rnn.bias_yh_l0 (H,);
layers k ≥ 1 the rnn keys; embedding and decoder as for every model.
"""

from __future__ import annotations

import numpy as np

from lstmgen.cells import CELLS
from lstmgen.errors import ConfigError
from lstmgen.networks.forward import ForwardLM
from lstmgen.networks.layers import dropout_mask, input_projection_grads, input_table, layer0_input, stack_shapes
from lstmgen.networks.losses import softmax


class Jordan(ForwardLM):
    """The Jordan network: Elman layers, layer 0 reading the model's previous output as well."""

    inspect_note = ("jordan: layer 0 reads no state of its own; at each character it reads the distribution of "
                    "the row above (the guesses the model made before this character), fed back as y")

    def __init__(self, cfg):
        if cfg.direction == "bi":
            raise ConfigError("--cell jordan --direction bi: a Jordan network reads its own previous output, which "
                              "needs one direction; choose another cell or --direction fwd")
        self.cfg = cfg
        self.spec = CELLS["rnn"]  # every layer is an Elman cell; layer 0 also reads y

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        cfg, H = self.cfg, self.cfg.hidden
        shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (cfg.vocab_size, cfg.embed)}
        # layer 0 reads the previous output y (V) instead of its own h
        shapes.update({"rnn.weight_ih_l0": (H, cfg.embed), "rnn.weight_yh_l0": (H, cfg.vocab_size),
                       "rnn.bias_ih_l0": (H,), "rnn.bias_yh_l0": (H,)})
        shapes.update(stack_shapes(self.spec, cfg, "", first=1))
        shapes["decoder.weight"] = (cfg.vocab_size, H)
        shapes["decoder.bias"] = (cfg.vocab_size,)
        return shapes

    def state_layout(self) -> list[tuple[tuple[str, int], ...]]:
        """Layer 0 carries h and y, the output fed back (V rows); layers k ≥ 1 carry h."""
        cfg = self.cfg
        return [(("h", cfg.hidden), ("y", cfg.vocab_size))] + [(("h", cfg.hidden),)] * (cfg.layers - 1)

    def forward(self, params, x: np.ndarray, state, rng=None):
        """The whole stack step by step (layer 0 reads the previous output): as ``ForwardLM.forward``."""
        cfg = self.cfg
        ids = np.ascontiguousarray(x.T)  # (T, B)
        T, B = ids.shape
        p = cfg.dropout if rng is not None else 0.0
        xp, inp = layer0_input(params, ids, layer0_bias(params))
        masks = [dropout_mask(rng, (cfg.hidden, T, B), p, cfg.np_dtype) for _ in range(cfg.layers)] if p else None
        logits, new_state, cache = _steps(cfg, params, xp, state, masks)
        return logits, new_state, (ids, inp, cache)

    def backward(self, params, dlogits, cache, grads, dstate=None, d_input: list | None = None):
        ids, inp, steps = cache
        d_flat, dstate0 = _steps_backward(self.cfg, params, dlogits, steps, grads, dstate)
        if d_input is not None:
            d_input.append(d_flat)
        np.sum(d_flat, axis=1, out=grads["rnn.bias_ih_l0"])
        input_projection_grads(params, grads, d_flat, inp, ids)
        return dstate0

    def read_layers(self, cache) -> list[dict[str, np.ndarray]]:
        hs = cache[2][0]  # per layer (H, T+1, 1)
        return [{"h": np.ascontiguousarray(h[:, 1:, 0].T)} for h in hs]

    def stepper(self, params: dict, batch: int = 1):
        return JordanStepper(self, params, batch)


def layer0_bias(params: dict) -> np.ndarray:
    """Layer 0's input bias: b_ih + b_yh (H,)."""
    return params["rnn.bias_ih_l0"] + params["rnn.bias_yh_l0"]


def _steps(cfg, params, x0: np.ndarray, state, masks):
    """Step by step over T characters.

    x0     (T, H, B) layer 0's input projection of every character, b_ih + b_yh included (time-major)
    state  [(h0, y), (h1,), …]
    masks  per layer a dropout mask (H, T, B) (already scaled by 1/P(kept): ``layers.dropout_mask``), or None
    returns (logits (V, T·B) with column t·B + b, new state, cache)
    """
    T, H, B = x0.shape
    L, V = cfg.layers, cfg.vocab_size
    dt = x0.dtype
    w_yh, w_dec, b_dec = params["rnn.weight_yh_l0"], params["decoder.weight"], params["decoder.bias"][:, None]
    hs = [np.empty((H, T + 1, B), dtype=dt) for _ in range(L)]  # slot 0: the initial state
    tops = [np.empty((H, T, B), dtype=dt) for _ in range(L)]  # each layer's output after dropout
    ys = np.empty((V, T + 1, B), dtype=dt)  # slot 0: y before the first character; slot t+1: y_t
    logits = np.empty((V, T, B), dtype=dt)
    for k in range(L):
        hs[k][:, 0] = state[k][0]
    ys[:, 0] = state[0][1]
    a = np.empty((H, B), dtype=dt)
    for t in range(T):
        h = _layer0_step(w_yh, ys[:, t], x0[t], a, hs[0][:, t + 1])
        out = np.multiply(h, masks[0][:, t], out=tops[0][:, t]) if masks else _copy(h, tops[0][:, t])
        for k in range(1, L):
            h = _elman_step(params, k, out, hs[k][:, t], a, hs[k][:, t + 1])
            out = np.multiply(h, masks[k][:, t], out=tops[k][:, t]) if masks else _copy(h, tops[k][:, t])
        z = np.matmul(w_dec, out, out=logits[:, t])
        z += b_dec
        softmax(z, out=ys[:, t + 1])
    new_state = [(hs[0][:, T].copy(), ys[:, T].copy())] + [(hs[k][:, T].copy(),) for k in range(1, L)]
    return logits.reshape(V, T * B), new_state, (hs, tops, ys, masks)


def _layer0_step(w_yh, y, x0_t, a, out):
    """Layer 0 for one step: out = tanh(W_yh y_{t−1} + x0_t) (x0_t: W_ih x_t + b_ih + b_yh), scratch a (H, B)."""
    np.matmul(w_yh, y, out=a)  # the fed-back output
    a += x0_t
    return np.tanh(a, out=out)


def _elman_step(params, k: int, x, h_prev, a, out):
    """Layer k ≥ 1 for one step: out = tanh(W_ih x + W_hh h_prev + b_ih + b_hh), scratch a (H, B).
    ``out`` may be ``h_prev`` (the stepper updates its state in place)."""
    np.matmul(params[f"rnn.weight_ih_l{k}"], x, out=a)
    a += np.matmul(params[f"rnn.weight_hh_l{k}"], h_prev)
    a += params[f"rnn.bias_ih_l{k}"][:, None]
    a += params[f"rnn.bias_hh_l{k}"][:, None]
    return np.tanh(a, out=out)


def _copy(src, dst):
    dst[...] = src
    return dst



def _steps_backward(cfg, params, dlogits: np.ndarray, cache, grads: dict, dstate=None):
    """Backward of ``_steps``.

    dlogits (V, T·B): the loss's gradient w.r.t. the logits ((y − onehot)/N); the feedback's part
    is added here. Fills grads for every layer's recurrent weights and the decoder, and returns
    (d_x0 (H, T·B) for layer 0's input projection, dL/d(state0)).
    """
    hs, tops, ys, masks = cache
    H, T1, B = hs[0].shape
    T, L, V = T1 - 1, cfg.layers, cfg.vocab_size
    dt = hs[0].dtype
    D = dlogits.reshape(V, T, B)  # becomes the full dL/dlogits, step by step
    w_yh, w_dec = params["rnn.weight_yh_l0"], params["decoder.weight"]
    das = [np.empty((H, T, B), dtype=dt) for _ in range(L)]  # dL/d(pre-activation) per layer and step
    zero_h = np.zeros((H, B), dtype=dt)
    dh_rec = [zero_h.copy() if dstate is None else dstate[k][0].astype(dt, copy=True) for k in range(L)]
    dy = np.zeros((V, B), dtype=dt) if dstate is None else dstate[0][1].astype(dt, copy=True)
    for t in range(T - 1, -1, -1):
        y = ys[:, t + 1]
        dz = D[:, t]
        dz += y * (dy - np.sum(y * dy, axis=0))  # through the softmax that fed y_t back
        dh = w_dec.T @ dz  # into the top layer's (dropped-out) output
        for k in range(L - 1, -1, -1):
            if masks:
                dh *= masks[k][:, t]
            dh += dh_rec[k]  # from step t+1 (layer 0: only the final state's gradient, at t = T−1)
            h = hs[k][:, t + 1]
            da = np.multiply(dh, 1.0 - h * h, out=das[k][:, t])  # tanh' = 1 − h²
            if k > 0:
                dh_rec[k] = params[f"rnn.weight_hh_l{k}"].T @ da
                dh = params[f"rnn.weight_ih_l{k}"].T @ da  # into the layer below
            else:
                dh_rec[0] = zero_h  # h⁰ is not read at the next step; y is
                dy = w_yh.T @ da  # into y_{t−1}
    flat = lambda a: a.reshape(a.shape[0], -1)  # noqa: E731 -- (F, T, B) → (F, T·B)
    top = tops[L - 1]
    np.matmul(flat(D), flat(top).T, out=grads["decoder.weight"])
    np.sum(flat(D), axis=1, out=grads["decoder.bias"])
    np.matmul(flat(das[0]), flat(ys[:, :T]).T, out=grads["rnn.weight_yh_l0"])
    np.sum(flat(das[0]), axis=1, out=grads["rnn.bias_yh_l0"])
    for k in range(1, L):
        d = flat(das[k])
        np.matmul(d, flat(hs[k][:, :T]).T, out=grads[f"rnn.weight_hh_l{k}"])
        np.matmul(d, flat(tops[k - 1]).T, out=grads[f"rnn.weight_ih_l{k}"])
        np.sum(d, axis=1, out=grads[f"rnn.bias_ih_l{k}"])
        grads[f"rnn.bias_hh_l{k}"][...] = grads[f"rnn.bias_ih_l{k}"]
    dstate0 = [(np.zeros((H, B), dtype=dt), dy)] + [(dh_rec[k],) for k in range(1, L)]
    return flat(das[0]), dstate0



class JordanStepper:
    """One-step generation for the Jordan network: the state holds each layer's h and layer 0's y."""

    def __init__(self, network, p: dict, batch: int = 1):
        cfg = network.cfg
        self.cfg, self.p, self.batch = cfg, p, batch
        self.table = np.ascontiguousarray(input_table(p, layer0_bias(p)).T)  # (V, H): a row per id, biases in
        self.h = [np.zeros((cfg.hidden, batch), dtype=cfg.np_dtype) for _ in range(cfg.layers)]
        self.y = np.zeros((cfg.vocab_size, batch), dtype=cfg.np_dtype)
        self.a = np.empty((cfg.hidden, batch), dtype=cfg.np_dtype)  # scratch
        self.logits_buf = np.empty((cfg.vocab_size, batch), dtype=cfg.np_dtype)

    @property
    def state(self):
        return [(self.h[0], self.y)] + [(h,) for h in self.h[1:]]

    def reset(self, state=None) -> None:
        for k, h in enumerate(self.h):
            h[...] = 0.0 if state is None else state[k][0]
        self.y[...] = 0.0 if state is None else state[0][1]

    def step(self, ids) -> np.ndarray:
        """Feed ids (B,) (or one int at B = 1); return the next-character logits (B, V)."""
        p = self.p
        x0 = self.table[ids][:, None] if isinstance(ids, int) else self.table[np.asarray(ids).reshape(self.batch)].T
        _layer0_step(p["rnn.weight_yh_l0"], self.y, x0, self.a, self.h[0])
        for k in range(1, self.cfg.layers):  # the same steps as the sequence forward
            _elman_step(p, k, self.h[k - 1], self.h[k], self.a, self.h[k])
        np.matmul(p["decoder.weight"], self.h[-1], out=self.logits_buf)
        self.logits_buf += p["decoder.bias"][:, None]
        self.y[...] = self.logits_buf
        softmax(self.y, out=self.y)  # what is fed back at the next step
        return self.logits_buf.T

