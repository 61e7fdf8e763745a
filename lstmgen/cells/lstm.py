"""The LSTM cell (PyTorch gate order i, f, g, o):

    i, f, o = σ(a_i), σ(a_f), σ(a_o);  g = tanh(a_g)
    c_t = f ⊙ c_{t−1} + i ⊙ g;         h_t = o ⊙ tanh(c_t)

Shapes and conventions: see ``lstmgen.cells``."""

from __future__ import annotations

import numpy as np

from lstmgen.cells.ops import (
    cell_state_forward,
    feature_major,
    gate_derivatives,
    sigmoid_with_tanh_block_,
    weight_grad,
)
from lstmgen.cells.spec import CellSpec


def lstm_step(a, c_prev, c_out, tc_out, h_out, tmp):
    """One LSTM step from pre-activations a (4H, B), in place: a becomes the gates i, f, g, o.

    c_out may be c_prev (the one-step API updates its state in place).
    """
    H = a.shape[0] // 4
    sigmoid_with_tanh_block_(a, 2 * H, 3 * H)
    i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
    np.multiply(i, g, out=tmp)
    np.multiply(f, c_prev, out=c_out)
    c_out += tmp
    np.tanh(c_out, out=tc_out)
    np.multiply(o, tc_out, out=h_out)


def lstm_forward(xp, state, rec):
    """xp (T, 4H, B), consumed; the cache holds the gates i, f, g, o after their nonlinearities."""
    return cell_state_forward(xp, state, rec, lstm_step)


def lstm_backward(dhs, dstate, cache):
    gates, cs, tcs, hbuf, rec = cache
    w = rec["w_hh"]
    T, G, B = gates.shape
    H = G // 4
    d3 = np.empty((T, G, B), dtype=gates.dtype)  # dL/d(pre-activations) = dL/d(xp)
    dh = dstate[0].copy()
    dc = dstate[1].copy()
    tmp = np.empty((H, B), dtype=gates.dtype)
    d = np.empty((G, B), dtype=gates.dtype)
    deriv = np.empty((G, B), dtype=gates.dtype)
    di, df, dgg, do = d[:H], d[H : 2 * H], d[2 * H : 3 * H], d[3 * H :]
    for t in range(T - 1, -1, -1):
        a = gates[t]
        i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
        tc = tcs[t]
        dh += dhs[:, t]
        np.multiply(dh, tc, out=do)  # h = o ⊙ tanh(c)  → do
        np.multiply(tc, tc, out=tmp)  # → dc through tanh(c)
        np.subtract(1.0, tmp, out=tmp)
        tmp *= o
        tmp *= dh
        dc += tmp
        np.multiply(dc, g, out=di)  # c = f ⊙ c_prev + i ⊙ g → di, df, dg
        np.multiply(dc, cs[t], out=df)
        np.multiply(dc, i, out=dgg)
        dc *= f  # → dc_{t−1}
        np.multiply(d, gate_derivatives(a, deriv, 2 * H, 3 * H), out=d3[t])  # σ' on i, f, o; tanh' on g
        np.matmul(w.T, d3[t], out=dh)  # into h_{t−1}
    d_flat = feature_major(d3)
    return d_flat, (dh, dc), {"w_hh": weight_grad(d_flat, hbuf)}


def lstm_trace(cache) -> dict[str, np.ndarray]:
    """Per-step activations from a forward cache, each (T, H, B): i, f, g, o, c, h."""
    gates, cs, _, hbuf, _ = cache
    H = hbuf.shape[0]
    return {"i": gates[:, :H], "f": gates[:, H : 2 * H], "g": gates[:, 2 * H : 3 * H], "o": gates[:, 3 * H :],
            "c": cs[1:], "h": hbuf[:, 1:].transpose(1, 0, 2)}


def forget_bias(b_ih: np.ndarray, b_hh: np.ndarray, H: int) -> None:
    """A forget-gate bias of 1 (Jozefowicz et al. 2015): f starts near σ(1) ≈ 0.73, remembering."""
    b_ih[H : 2 * H], b_hh[H : 2 * H] = 1.0, 0.0


def _step(a, ah, h, c, rec, s):  # the stepper's step: a = W_ih x + W_hh h + b, c updated in place
    lstm_step(a, c, c, s.tc, h, s.tmp)


SPEC = CellSpec(name="lstm", gates=4, states=("h", "c"), quantities=("i", "f", "g", "o", "c", "h"),
                gate_blocks="ifgo", keep_gate="f", sigmoid="ifo", forward=lstm_forward, backward=lstm_backward,
                step=_step, trace=lstm_trace, init_bias=forget_bias)
