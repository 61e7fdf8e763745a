"""The peephole LSTM (Gers & Schmidhuber 2000), diagonal peepholes p (3, H) for i, f, o:

    i = σ(a_i + p_i ⊙ c_{t−1}),  f = σ(a_f + p_f ⊙ c_{t−1}),  g = tanh(a_g)
    c_t = f ⊙ c_{t−1} + i ⊙ g,    o = σ(a_o + p_o ⊙ c_t),      h_t = o ⊙ tanh(c_t)

The peepholes are the one parameter PyTorch's layout lacks: ``rnn.weight_peep_l{k}`` (3, H).
Shapes and conventions: see ``lstmgen.cells``."""

from __future__ import annotations

import numpy as np

from lstmgen.cells.lstm import forget_bias, lstm_trace
from lstmgen.cells.ops import (
    cell_state_forward,
    feature_major,
    gate_derivatives,
    sigmoid_,
    sigmoid_with_tanh_block_,
    weight_grad,
)
from lstmgen.cells.spec import CellSpec


def peephole_step(a, peep, c_prev, c_out, tc_out, h_out, tmp):
    """One peephole-LSTM step from a (4H, B), in place (a becomes the gates); peep = (p_i, p_f, p_o),
    each (H, 1). c_out may be c_prev."""
    H = a.shape[0] // 4
    pi, pf, po = peep
    ai, af, ag, ao = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
    np.multiply(pi, c_prev, out=tmp)
    ai += tmp
    np.multiply(pf, c_prev, out=tmp)
    af += tmp
    sigmoid_with_tanh_block_(a[: 3 * H], 2 * H, 3 * H)
    np.multiply(ai, ag, out=tmp)  # ai, af, ag now hold i, f, g
    np.multiply(af, c_prev, out=c_out)
    c_out += tmp
    np.multiply(po, c_out, out=tmp)  # o sees c_t
    ao += tmp
    sigmoid_(ao)
    np.tanh(c_out, out=tc_out)
    np.multiply(ao, tc_out, out=h_out)


def peephole_forward(xp, state, rec):
    """xp (T, 4H, B), consumed; rec["peep"] (3, H): the peepholes p_i, p_f, p_o, each read as (H, 1)."""
    p = rec["peep"]
    peep = (p[0][:, None], p[1][:, None], p[2][:, None])

    def step(a, c_prev, c_out, tc_out, h_out, tmp):
        peephole_step(a, peep, c_prev, c_out, tc_out, h_out, tmp)

    return cell_state_forward(xp, state, rec, step)


def peephole_backward(dhs, dstate, cache):
    gates, cs, tcs, hbuf, rec = cache
    w, p = rec["w_hh"], rec["peep"]
    T, G, B = gates.shape
    H = G // 4
    pi, pf, po = p[0][:, None], p[1][:, None], p[2][:, None]
    d3 = np.empty((T, G, B), dtype=gates.dtype)
    dh = dstate[0].copy()
    dc = dstate[1].copy()
    tmp = np.empty((H, B), dtype=gates.dtype)
    deriv = np.empty((G, B), dtype=gates.dtype)
    dp = np.zeros_like(p)
    for t in range(T - 1, -1, -1):
        d = d3[t]  # dL/da_t, written in place
        di, df, dgg, do = d[:H], d[H : 2 * H], d[2 * H : 3 * H], d[3 * H :]
        a = gates[t]
        i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
        c_prev, tc = cs[t], tcs[t]
        gate_derivatives(a, deriv, 2 * H, 3 * H)  # σ' on i, f, o; tanh' on g
        dh += dhs[:, t]
        np.multiply(dh, tc, out=do)  # h = o ⊙ tanh(c)
        do *= deriv[3 * H :]  # now dL/da_o
        np.multiply(tc, tc, out=tmp)
        np.subtract(1.0, tmp, out=tmp)
        tmp *= o
        tmp *= dh
        dc += tmp
        np.multiply(do, po, out=tmp)  # a_o sees c_t
        dc += tmp
        np.multiply(dc, g, out=di)
        np.multiply(dc, c_prev, out=df)
        np.multiply(dc, i, out=dgg)
        d[: 3 * H] *= deriv[: 3 * H]  # dL/da_i, dL/da_f, dL/da_g
        dc *= f  # → dc_{t−1}: direct path plus the i and f peepholes
        np.multiply(di, pi, out=tmp)
        dc += tmp
        np.multiply(df, pf, out=tmp)
        dc += tmp
        dp[0] += np.einsum("hb,hb->h", di, c_prev)
        dp[1] += np.einsum("hb,hb->h", df, c_prev)
        dp[2] += np.einsum("hb,hb->h", do, cs[t + 1])
        np.matmul(w.T, d, out=dh)
    d_flat = feature_major(d3)
    return d_flat, (dh, dc), {"w_hh": weight_grad(d_flat, hbuf), "peep": dp}


def _step(a, ah, h, c, rec, s):  # the stepper's step: a = W_ih x + W_hh h + b, c updated in place
    p = rec["peep"]
    peephole_step(a, (p[0][:, None], p[1][:, None], p[2][:, None]), c, c, s.tc, h, s.tmp)


SPEC = CellSpec(name="peephole", gates=4, states=("h", "c"), quantities=("i", "f", "g", "o", "c", "h"),
                gate_blocks="ifgo", keep_gate="f", sigmoid="ifo", forward=peephole_forward,
                backward=peephole_backward, step=_step, trace=lstm_trace, init_bias=forget_bias,
                recurrent={"w_hh": "weight_hh", "peep": "weight_peep"}, extra={"weight_peep": "ifo"})
