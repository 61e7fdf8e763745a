"""The Elman RNN cell: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh).

Shapes and conventions: see ``lstmgen.cells``."""

from __future__ import annotations

import numpy as np

from lstmgen.cells.ops import feature_major, new_hbuf, weight_grad
from lstmgen.cells.spec import CellSpec


def rnn_step(a, h_out):
    """a (H, B) pre-activation → h_out = tanh(a)."""
    np.tanh(a, out=h_out)


def rnn_forward(xp, state, rec):
    (h0,) = state
    w = rec["w_hh"]  # (H, H)
    T, G, B = xp.shape
    hbuf = new_hbuf(h0, T)
    a = xp  # (T, H, B): the input projections, then (in place) the pre-activations
    ah = np.empty((G, B), dtype=xp.dtype)
    for t in range(T):
        a[t] += np.matmul(w, hbuf[:, t], out=ah)  # (H, B)
        rnn_step(a[t], hbuf[:, t + 1])
    return hbuf, (hbuf[:, T].copy(),), (hbuf, rec)


def rnn_backward(dhs, dstate, cache):
    hbuf, rec = cache
    w = rec["w_hh"]
    H, T, B = dhs.shape
    d3 = np.empty((T, H, B), dtype=hbuf.dtype)  # dL/d(pre-activation) = dL/d(xp), time-major
    dh = dstate[0].copy()
    for t in range(T - 1, -1, -1):
        dh += dhs[:, t]
        h, da = hbuf[:, t + 1], d3[t]
        np.multiply(h, h, out=da)  # tanh' = 1 − h²
        np.subtract(1.0, da, out=da)
        da *= dh
        np.matmul(w.T, da, out=dh)  # into h_{t−1}
    d_flat = feature_major(d3)
    return d_flat, (dh,), {"w_hh": weight_grad(d_flat, hbuf)}


def rnn_trace(cache) -> dict[str, np.ndarray]:
    """Per-step activations from a forward cache, each (T, H, B): h."""
    hbuf = cache[0]
    return {"h": hbuf[:, 1:].transpose(1, 0, 2)}


def _step(a, ah, h, c, rec, s):  # the stepper's step: a = W_ih x + W_hh h + b
    rnn_step(a, h)


SPEC = CellSpec(name="rnn", gates=1, states=("h",), quantities=("h",), gate_blocks="h", keep_gate=None, sigmoid="",
                forward=rnn_forward, backward=rnn_backward, step=_step, trace=rnn_trace)
