"""The CIFG LSTM (coupled input and forget gates), gate order i, g, o and f = 1 − i:

    c_t = (1 − i) ⊙ c_{t−1} + i ⊙ g = c_{t−1} + i ⊙ (g − c_{t−1});  h_t = o ⊙ tanh(c_t)

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


def cifg_step(a, c_prev, c_out, tc_out, h_out, tmp):
    """One CIFG step from a (3H, B), in place (a becomes i, g, o); c_out may be c_prev."""
    H = a.shape[0] // 3
    sigmoid_with_tanh_block_(a, H, 2 * H)
    i, g, o = a[:H], a[H : 2 * H], a[2 * H :]
    np.subtract(g, c_prev, out=tmp)  # c = c_prev + i ⊙ (g − c_prev)
    tmp *= i
    np.add(c_prev, tmp, out=c_out)
    np.tanh(c_out, out=tc_out)
    np.multiply(o, tc_out, out=h_out)


def cifg_forward(xp, state, rec):
    """xp (T, 3H, B), consumed; the cache holds the gates i, g, o after their nonlinearities."""
    return cell_state_forward(xp, state, rec, cifg_step)


def cifg_backward(dhs, dstate, cache):
    gates, cs, tcs, hbuf, rec = cache
    w = rec["w_hh"]
    T, G, B = gates.shape
    H = G // 3
    d3 = np.empty((T, G, B), dtype=gates.dtype)
    dh = dstate[0].copy()
    dc = dstate[1].copy()
    tmp = np.empty((H, B), dtype=gates.dtype)
    d = np.empty((G, B), dtype=gates.dtype)
    deriv = np.empty((G, B), dtype=gates.dtype)
    di, dgg, do = d[:H], d[H : 2 * H], d[2 * H :]
    for t in range(T - 1, -1, -1):
        a = gates[t]
        i, g, o = a[:H], a[H : 2 * H], a[2 * H :]
        tc = tcs[t]
        dh += dhs[:, t]
        np.multiply(dh, tc, out=do)
        np.multiply(tc, tc, out=tmp)
        np.subtract(1.0, tmp, out=tmp)
        tmp *= o
        tmp *= dh
        dc += tmp
        np.subtract(g, cs[t], out=di)  # c = c_prev + i ⊙ (g − c_prev)
        di *= dc
        np.multiply(dc, i, out=dgg)
        dc -= dgg  # dc_{t−1} = dc ⊙ (1 − i)
        np.multiply(d, gate_derivatives(a, deriv, H, 2 * H), out=d3[t])  # σ' on i, o; tanh' on g
        np.matmul(w.T, d3[t], out=dh)
    d_flat = feature_major(d3)
    return d_flat, (dh, dc), {"w_hh": weight_grad(d_flat, hbuf)}


def cifg_trace(cache) -> dict[str, np.ndarray]:
    """Per-step activations from a forward cache, each (T, H, B): i, f = 1 − i, g, o, c, h."""
    gates, cs, _, hbuf, _ = cache
    H = hbuf.shape[0]
    i = gates[:, :H]
    return {"i": i, "f": 1.0 - i, "g": gates[:, H : 2 * H], "o": gates[:, 2 * H :], "c": cs[1:],
            "h": hbuf[:, 1:].transpose(1, 0, 2)}


def coupled_bias(b_ih: np.ndarray, b_hh: np.ndarray, H: int) -> None:
    """An input-gate bias of −1: f = 1 − i starts near σ(1), as the LSTM's forget bias of 1 gives."""
    b_ih[:H], b_hh[:H] = -1.0, 0.0


def _step(a, ah, h, c, rec, s):  # the stepper's step: a = W_ih x + W_hh h + b, c updated in place
    cifg_step(a, c, c, s.tc, h, s.tmp)


SPEC = CellSpec(name="cifg", gates=3, states=("h", "c"), quantities=("i", "f", "g", "o", "c", "h"),
                gate_blocks="igo", keep_gate="f", sigmoid="ifo", forward=cifg_forward, backward=cifg_backward,
                step=_step, trace=cifg_trace, init_bias=coupled_bias)
