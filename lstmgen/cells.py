"""Recurrent cells: pure forward and backward passes over a whole sequence.

Notation (the same letters everywhere in lstmgen):
    B batch, T time, H hidden units, G gate blocks (lstm 4, gru 3, cifg 3, rnn 1).

Layout. The math runs *feature-major*: a state is (H, B), a gate pre-activation (G·H, B),
so a gate block ``a[k*H:(k+1)*H]`` is contiguous memory and the recurrent product is
``W_hh @ h`` with ``W_hh`` exactly in PyTorch's (G·H, H) layout. Whole sequences are
(F, T, B): their (F, T·B) reshape is what one GEMM over all time steps needs, so input
projections, input gradients and weight gradients never transpose anything.

Every forward takes
    xp     (G·H, T, B)  input projections W_ih x_t + biases, computed by the caller for all t
    state  tuple of (H, B) arrays: (h, c) for lstm/peephole/cifg, (h,) for gru/rnn
    rec    dict of recurrent parameters: ``w_hh`` (G·H, H), plus ``b_hh`` (gru) or ``peep`` (peephole)
and returns ``hbuf`` (H, T+1, B) with ``hbuf[:, 0]`` = h_0 and ``hbuf[:, t+1]`` = h_t (so
outputs and previous states are both (H, T·B) views), the final state, and a cache.
Every backward takes
    dhs    (H, T, B)    loss gradient w.r.t. each output h_t (from the layer above)
    dstate tuple like state: gradient w.r.t. the final state (zeros for truncated BPTT)
and returns ``dxp`` (G·H, T·B), the gradient w.r.t. the initial state, and a dict of
gradients for ``rec``. The time loop computes only per-step gate gradients; weight
gradients are single GEMMs over all T·B columns afterwards. Per-step work runs on
contiguous (·, B) scratch and caches; strided (·, T, B) views are touched once a step.

Nonlinearities use one ``exp`` over all gate blocks: tanh(a) = 2σ(2a) − 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def sigmoid_(a: np.ndarray) -> np.ndarray:
    """σ(a) in place. exp(−a) may overflow to inf for very negative a; 1/(1+inf) = 0 is right."""
    np.negative(a, out=a)
    np.exp(a, out=a)
    a += 1.0
    np.reciprocal(a, out=a)
    return a


def _sigmoid_with_tanh_block_(a: np.ndarray, lo: int, hi: int) -> None:
    """σ over all rows of ``a`` in place, except rows lo:hi which get tanh (via 2σ(2x) − 1)."""
    blk = a[lo:hi]
    blk *= 2.0
    sigmoid_(a)
    blk *= 2.0
    blk -= 1.0


def _gate_derivatives(a: np.ndarray, deriv: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Backward of ``_sigmoid_with_tanh_block_``: from post-activations a, σ' = s(1 − s) on all
    rows into ``deriv``, except rows lo:hi (tanh) which get 1 − g²."""
    np.multiply(a, a, out=deriv)
    np.subtract(a, deriv, out=deriv)
    blk = deriv[lo:hi]
    np.multiply(a[lo:hi], a[lo:hi], out=blk)
    np.subtract(1.0, blk, out=blk)
    return deriv


def _new_hbuf(h0: np.ndarray, T: int) -> np.ndarray:
    """(H, T+1, B) output buffer whose slot 0 holds the initial state."""
    H, B = h0.shape
    hbuf = np.empty((H, T + 1, B), dtype=h0.dtype)
    hbuf[:, 0] = h0
    return hbuf


def flat(x: np.ndarray) -> np.ndarray:
    """(F, T, B) → (F, T·B) without copying (a view whose rows may be strided)."""
    F, T, B = x.shape
    return x.reshape(F, T * B)


def _weight_grad(d_flat: np.ndarray, hbuf: np.ndarray) -> np.ndarray:
    """dW_hh = Σ_t d_t h_{t−1}ᵀ as one GEMM: (G·H, T·B) @ (T·B, H)."""
    return d_flat @ flat(hbuf[:, :-1]).T


# ----------------------------------------------------------------------------------------
# Elman RNN: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh)


def rnn_step(a, h_out):
    """a (H, B) pre-activation → h_out = tanh(a)."""
    np.tanh(a, out=h_out)


def rnn_forward(xp, state, rec):
    (h0,) = state
    w = rec["w_hh"]  # (H, H)
    G, T, B = xp.shape
    hbuf = _new_hbuf(h0, T)
    a = np.empty((G, B), dtype=xp.dtype)
    for t in range(T):
        np.matmul(w, hbuf[:, t], out=a)  # (H, B)
        a += xp[:, t]
        rnn_step(a, hbuf[:, t + 1])
    return hbuf, (hbuf[:, T].copy(),), (hbuf, rec)


def rnn_backward(dhs, dstate, cache):
    hbuf, rec = cache
    w = rec["w_hh"]
    H, T, B = dhs.shape
    d3 = np.empty((H, T, B), dtype=hbuf.dtype)  # dL/d(pre-activation) = dL/d(xp)
    dh = dstate[0].copy()
    da = np.empty((H, B), dtype=hbuf.dtype)
    for t in range(T - 1, -1, -1):
        dh += dhs[:, t]
        h = hbuf[:, t + 1]
        np.multiply(h, h, out=da)  # tanh' = 1 − h²
        np.subtract(1.0, da, out=da)
        da *= dh
        d3[:, t] = da
        np.matmul(w.T, da, out=dh)  # into h_{t−1}
    d_flat = flat(d3)
    return d_flat, (dh,), {"w_hh": _weight_grad(d_flat, hbuf)}


# ----------------------------------------------------------------------------------------
# LSTM (PyTorch gate order i, f, g, o):
#   i, f, o = σ(a_i), σ(a_f), σ(a_o);  g = tanh(a_g)
#   c_t = f ⊙ c_{t−1} + i ⊙ g;         h_t = o ⊙ tanh(c_t)


def lstm_step(a, c_prev, c_out, tc_out, h_out, tmp):
    """One LSTM step from pre-activations a (4H, B), in place: a becomes the gates i, f, g, o.

    c_out may be c_prev (the one-step API updates its state in place).
    """
    H = a.shape[0] // 4
    _sigmoid_with_tanh_block_(a, 2 * H, 3 * H)
    i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
    np.multiply(i, g, out=tmp)
    np.multiply(f, c_prev, out=c_out)
    c_out += tmp
    np.tanh(c_out, out=tc_out)
    np.multiply(o, tc_out, out=h_out)


def lstm_forward(xp, state, rec):
    h0, c0 = state
    w = rec["w_hh"]  # (4H, H)
    G, T, B = xp.shape
    H = G // 4
    gates = np.empty((T, G, B), dtype=xp.dtype)  # post-activation i, f, g, o
    cs = np.empty((T + 1, H, B), dtype=xp.dtype)  # cs[0] = c_0, cs[t+1] = c_t
    tcs = np.empty((T, H, B), dtype=xp.dtype)  # tanh(c_t)
    hbuf = _new_hbuf(h0, T)
    cs[0] = c0
    tmp = np.empty((H, B), dtype=xp.dtype)
    for t in range(T):
        a = np.matmul(w, hbuf[:, t], out=gates[t])  # (4H, B)
        a += xp[:, t]
        lstm_step(a, cs[t], cs[t + 1], tcs[t], hbuf[:, t + 1], tmp)
    cache = (gates, cs, tcs, hbuf, rec)
    return hbuf, (hbuf[:, T].copy(), cs[T].copy()), cache


def lstm_backward(dhs, dstate, cache):
    gates, cs, tcs, hbuf, rec = cache
    w = rec["w_hh"]
    T, G, B = gates.shape
    H = G // 4
    d3 = np.empty((G, T, B), dtype=gates.dtype)  # dL/d(pre-activations) = dL/d(xp)
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
        d *= _gate_derivatives(a, deriv, 2 * H, 3 * H)  # σ' on i, f, o; tanh' on g
        d3[:, t] = d
        np.matmul(w.T, d, out=dh)  # into h_{t−1}
    d_flat = flat(d3)
    return d_flat, (dh, dc), {"w_hh": _weight_grad(d_flat, hbuf)}


# ----------------------------------------------------------------------------------------
# Peephole LSTM (Gers & Schmidhuber 2000), diagonal peepholes p (3, H) for i, f, o:
#   i = σ(a_i + p_i ⊙ c_{t−1}),  f = σ(a_f + p_f ⊙ c_{t−1}),  g = tanh(a_g)
#   c_t = f ⊙ c_{t−1} + i ⊙ g,    o = σ(a_o + p_o ⊙ c_t),      h_t = o ⊙ tanh(c_t)


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
    _sigmoid_with_tanh_block_(a[: 3 * H], 2 * H, 3 * H)
    np.multiply(ai, ag, out=tmp)  # ai, af, ag now hold i, f, g
    np.multiply(af, c_prev, out=c_out)
    c_out += tmp
    np.multiply(po, c_out, out=tmp)  # o sees c_t
    ao += tmp
    sigmoid_(ao)
    np.tanh(c_out, out=tc_out)
    np.multiply(ao, tc_out, out=h_out)


def peephole_forward(xp, state, rec):
    h0, c0 = state
    w, p = rec["w_hh"], rec["peep"]  # (4H, H), (3, H)
    G, T, B = xp.shape
    H = G // 4
    pi, pf, po = p[0][:, None], p[1][:, None], p[2][:, None]  # (H, 1)
    gates = np.empty((T, G, B), dtype=xp.dtype)
    cs = np.empty((T + 1, H, B), dtype=xp.dtype)
    tcs = np.empty((T, H, B), dtype=xp.dtype)
    hbuf = _new_hbuf(h0, T)
    cs[0] = c0
    tmp = np.empty((H, B), dtype=xp.dtype)
    for t in range(T):
        a = np.matmul(w, hbuf[:, t], out=gates[t])
        a += xp[:, t]
        peephole_step(a, (pi, pf, po), cs[t], cs[t + 1], tcs[t], hbuf[:, t + 1], tmp)
    cache = (gates, cs, tcs, hbuf, rec)
    return hbuf, (hbuf[:, T].copy(), cs[T].copy()), cache


def peephole_backward(dhs, dstate, cache):
    gates, cs, tcs, hbuf, rec = cache
    w, p = rec["w_hh"], rec["peep"]
    T, G, B = gates.shape
    H = G // 4
    pi, pf, po = p[0][:, None], p[1][:, None], p[2][:, None]
    d3 = np.empty((G, T, B), dtype=gates.dtype)
    dh = dstate[0].copy()
    dc = dstate[1].copy()
    tmp = np.empty((H, B), dtype=gates.dtype)
    d = np.empty((G, B), dtype=gates.dtype)
    deriv = np.empty((G, B), dtype=gates.dtype)
    di, df, dgg, do = d[:H], d[H : 2 * H], d[2 * H : 3 * H], d[3 * H :]
    dp = np.zeros_like(p)
    for t in range(T - 1, -1, -1):
        a = gates[t]
        i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
        c_prev, tc = cs[t], tcs[t]
        _gate_derivatives(a, deriv, 2 * H, 3 * H)  # σ' on i, f, o; tanh' on g
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
        d3[:, t] = d
        np.matmul(w.T, d, out=dh)
    d_flat = flat(d3)
    return d_flat, (dh, dc), {"w_hh": _weight_grad(d_flat, hbuf), "peep": dp}


# ----------------------------------------------------------------------------------------
# CIFG LSTM (coupled input and forget gates), gate order i, g, o and f = 1 − i:
#   c_t = (1 − i) ⊙ c_{t−1} + i ⊙ g = c_{t−1} + i ⊙ (g − c_{t−1});  h_t = o ⊙ tanh(c_t)


def cifg_step(a, c_prev, c_out, tc_out, h_out, tmp):
    """One CIFG step from a (3H, B), in place (a becomes i, g, o); c_out may be c_prev."""
    H = a.shape[0] // 3
    _sigmoid_with_tanh_block_(a, H, 2 * H)
    i, g, o = a[:H], a[H : 2 * H], a[2 * H :]
    np.subtract(g, c_prev, out=tmp)  # c = c_prev + i ⊙ (g − c_prev)
    tmp *= i
    np.add(c_prev, tmp, out=c_out)
    np.tanh(c_out, out=tc_out)
    np.multiply(o, tc_out, out=h_out)


def cifg_forward(xp, state, rec):
    h0, c0 = state
    w = rec["w_hh"]  # (3H, H)
    G, T, B = xp.shape
    H = G // 3
    gates = np.empty((T, G, B), dtype=xp.dtype)  # post-activation i, g, o
    cs = np.empty((T + 1, H, B), dtype=xp.dtype)
    tcs = np.empty((T, H, B), dtype=xp.dtype)
    hbuf = _new_hbuf(h0, T)
    cs[0] = c0
    tmp = np.empty((H, B), dtype=xp.dtype)
    for t in range(T):
        a = np.matmul(w, hbuf[:, t], out=gates[t])
        a += xp[:, t]
        cifg_step(a, cs[t], cs[t + 1], tcs[t], hbuf[:, t + 1], tmp)
    cache = (gates, cs, tcs, hbuf, rec)
    return hbuf, (hbuf[:, T].copy(), cs[T].copy()), cache


def cifg_backward(dhs, dstate, cache):
    gates, cs, tcs, hbuf, rec = cache
    w = rec["w_hh"]
    T, G, B = gates.shape
    H = G // 3
    d3 = np.empty((G, T, B), dtype=gates.dtype)
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
        d *= _gate_derivatives(a, deriv, H, 2 * H)  # σ' on i, o; tanh' on g
        d3[:, t] = d
        np.matmul(w.T, d, out=dh)
    d_flat = flat(d3)
    return d_flat, (dh, dc), {"w_hh": _weight_grad(d_flat, hbuf)}


# ----------------------------------------------------------------------------------------
# GRU (PyTorch's formulation), gate order r, z, n:
#   r = σ(a_r + W_hr h + b_hr),  z = σ(a_z + W_hz h + b_hz)
#   n = tanh(a_n + r ⊙ (W_hn h + b_hn)),  h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}
# The caller folds b_hr and b_hz into xp; b_hn stays inside (it is gated by r).


def gru_step(xp_t, ah, b_hn, h_prev, a_out, hn_out, h_out, tmp):
    """One GRU step: xp_t (3H, B) input projections, ah (3H, B) = W_hh h_prev (no bias).

    a_out (3H, B) receives r, z, n; hn_out (H, B) receives W_hn h_prev + b_hn. h_out may be h_prev.
    """
    H = ah.shape[0] // 3
    np.add(xp_t[: 2 * H], ah[: 2 * H], out=a_out[: 2 * H])
    np.add(ah[2 * H :], b_hn, out=hn_out)
    r, z, n = a_out[:H], a_out[H : 2 * H], a_out[2 * H :]
    sigmoid_(a_out[: 2 * H])
    np.multiply(r, hn_out, out=n)
    n += xp_t[2 * H :]
    np.tanh(n, out=n)
    np.subtract(h_prev, n, out=tmp)  # h_t = n + z ⊙ (h_{t−1} − n)
    tmp *= z
    np.add(tmp, n, out=h_out)


def gru_forward(xp, state, rec):
    (h0,) = state
    w, b_hh = rec["w_hh"], rec["b_hh"]  # (3H, H), (3H,)
    G, T, B = xp.shape
    H = G // 3
    b_hn = b_hh[2 * H :][:, None]  # (H, 1)
    gates = np.empty((T, G, B), dtype=xp.dtype)  # post-activation r, z, n
    hns = np.empty((T, H, B), dtype=xp.dtype)  # W_hn h_{t−1} + b_hn
    hbuf = _new_hbuf(h0, T)
    ah = np.empty((G, B), dtype=xp.dtype)
    tmp = np.empty((H, B), dtype=xp.dtype)
    for t in range(T):
        np.matmul(w, hbuf[:, t], out=ah)
        gru_step(xp[:, t], ah, b_hn, hbuf[:, t], gates[t], hns[t], hbuf[:, t + 1], tmp)
    return hbuf, (hbuf[:, T].copy(),), (gates, hns, hbuf, rec)


def gru_backward(dhs, dstate, cache):
    gates, hns, hbuf, rec = cache
    w = rec["w_hh"]
    T, G, B = gates.shape
    H = G // 3
    dx3 = np.empty((G, T, B), dtype=gates.dtype)  # dL/d(xp): r, z, n pre-activations
    dh3 = np.empty((G, T, B), dtype=gates.dtype)  # dL/d(W_hh h + b_hh)
    dh = dstate[0].copy()
    tmp = np.empty((H, B), dtype=gates.dtype)
    dx = np.empty((G, B), dtype=gates.dtype)
    dar, daz, dan = dx[:H], dx[H : 2 * H], dx[2 * H :]
    for t in range(T - 1, -1, -1):
        a = gates[t]
        r, z, n = a[:H], a[H : 2 * H], a[2 * H :]
        h_prev = hbuf[:, t]
        dh += dhs[:, t]
        np.multiply(n, n, out=tmp)  # dn through tanh, with dn = dh ⊙ (1 − z)
        np.subtract(1.0, tmp, out=tmp)
        np.multiply(dh, tmp, out=dan)
        np.multiply(dan, z, out=tmp)
        dan -= tmp
        np.subtract(h_prev, n, out=daz)  # dz = dh ⊙ (h_prev − n), then σ'
        daz *= dh
        np.multiply(z, z, out=tmp)
        np.subtract(z, tmp, out=tmp)
        daz *= tmp
        np.multiply(dan, hns[t], out=dar)  # dr = dan ⊙ (W_hn h + b_hn), then σ'
        np.multiply(r, r, out=tmp)
        np.subtract(r, tmp, out=tmp)
        dar *= tmp
        dx3[:, t] = dx
        dhh = dh3[:, t]
        dhh[: 2 * H] = dx[: 2 * H]
        np.multiply(dan, r, out=dhh[2 * H :])
        dh *= z  # direct path z ⊙ h_prev, plus the recurrent product
        dh += np.matmul(w.T, dhh, out=tmp)
    dh_flat = flat(dh3)
    grads = {"w_hh": _weight_grad(dh_flat, hbuf), "b_hh": dh_flat.sum(axis=1)}
    return flat(dx3), (dh,), grads


# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellSpec:
    """What the model needs to know about a cell type."""

    name: str
    gates: int  # G: gate blocks stacked in W_ih / W_hh
    n_states: int  # 2 for (h, c), 1 for (h,)
    quantities: tuple[str, ...]  # what the tracing forward reports, in order
    forward: Callable
    backward: Callable
    gate_blocks: str = ""  # the gate blocks of W_ih / W_hh in order, one letter each (inspect's --params)
    keep_gate: str | None = None  # the gate that keeps the state when near 1 (an "integrator" unit's)


CELLS: dict[str, CellSpec] = {
    "lstm": CellSpec("lstm", 4, 2, ("i", "f", "g", "o", "c", "h"), lstm_forward, lstm_backward, "ifgo", "f"),
    "peephole": CellSpec(
        "peephole", 4, 2, ("i", "f", "g", "o", "c", "h"), peephole_forward, peephole_backward, "ifgo", "f"
    ),
    "cifg": CellSpec("cifg", 3, 2, ("i", "f", "g", "o", "c", "h"), cifg_forward, cifg_backward, "igo", "f"),
    "gru": CellSpec("gru", 3, 1, ("r", "z", "n", "h"), gru_forward, gru_backward, "rzn", "z"),
    "rnn": CellSpec("rnn", 1, 1, ("h",), rnn_forward, rnn_backward, "h"),
}


def trace_quantities(cell: str, cache) -> dict[str, np.ndarray]:
    """Per-step activations from a forward cache, each (T, H, B)."""
    hbuf = cache[-2]
    H = hbuf.shape[0]
    hs = hbuf[:, 1:].transpose(1, 0, 2)
    if cell == "rnn":
        return {"h": hs}
    if cell == "gru":
        gates = cache[0]
        return {"r": gates[:, :H], "z": gates[:, H : 2 * H], "n": gates[:, 2 * H :], "h": hs}
    gates, cs = cache[0], cache[1][1:]
    if cell == "cifg":
        i = gates[:, :H]
        return {"i": i, "f": 1.0 - i, "g": gates[:, H : 2 * H], "o": gates[:, 2 * H :], "c": cs, "h": hs}
    return {"i": gates[:, :H], "f": gates[:, H : 2 * H], "g": gates[:, 2 * H : 3 * H],
            "o": gates[:, 3 * H :], "c": cs, "h": hs}
