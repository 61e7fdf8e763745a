"""Recurrent cells: pure forward and backward passes over a whole sequence.

Notation (the same letters everywhere in lstmgen):
    B batch, T time, H hidden units, G gate blocks (lstm 4, gru 3, cifg 3, rnn 1).

Layout. The math runs *feature-major*: a state is (H, B) and a gate pre-activation is
(G·H, B), so a gate block ``a[k*H:(k+1)*H]`` is contiguous memory and the recurrent
product is ``W_hh @ h`` with ``W_hh`` exactly in PyTorch's (G·H, H) layout. Sequences are
time-major, (T, G·H, B), so every per-step slice is contiguous too.

Every forward takes
    xp     (T, G·H, B)  input projections W_ih x_t + biases, computed by the caller for all t
    state  tuple of (H, B) arrays: (h, c) for lstm/peephole/cifg, (h,) for gru/rnn
    rec    dict of recurrent parameters: ``w_hh`` (G·H, H), plus ``b_hh`` (gru) or ``peep`` (peephole)
and returns ``hs`` (T, H, B), the final state and a cache. Every backward takes
    dhs    (T, H, B)    loss gradient w.r.t. each output h_t (from the layer above)
    dstate tuple like state: gradient w.r.t. the final state (zeros for truncated BPTT)
and returns ``dxp`` (T, G·H, B), ``dxp_flat`` (G·H, T·B) (the same numbers, laid out for
weight-gradient GEMMs), the gradient w.r.t. the initial state, and a dict of gradients for
``rec``. Weight gradients are single GEMMs over all T·B columns after the time loop.

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


def _time_to_flat(x: np.ndarray) -> np.ndarray:
    """(T, F, B) → (F, T·B): the layout in which one GEMM covers all time steps."""
    T, F, B = x.shape
    return np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(F, T * B)


def _prev_states_flat(h0: np.ndarray, hs: np.ndarray) -> np.ndarray:
    """(H, T·B) holding h_{t−1} for t = 0..T−1, i.e. [h0, hs[0], ..., hs[T−2]]."""
    T, H, B = hs.shape
    out = np.empty((H, T, B), dtype=hs.dtype)
    out[:, 0] = h0
    if T > 1:
        out[:, 1:] = hs[:-1].transpose(1, 0, 2)
    return out.reshape(H, T * B)


# ----------------------------------------------------------------------------------------
# Elman RNN: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh)


def rnn_forward(xp, state, rec):
    (h0,) = state
    w = rec["w_hh"]  # (H, H)
    T, H, B = xp.shape
    hs = np.empty((T, H, B), dtype=xp.dtype)
    h = h0
    for t in range(T):
        a = np.matmul(w, h, out=hs[t])  # (H, B)
        a += xp[t]
        np.tanh(a, out=a)
        h = a
    return hs, (hs[-1].copy(),), (h0, hs, rec)


def rnn_backward(dhs, dstate, cache):
    h0, hs, rec = cache
    w = rec["w_hh"]
    T, H, B = hs.shape
    da = np.empty((T, H, B), dtype=hs.dtype)  # dL/d(pre-activation), = dxp
    dh = dstate[0].copy()
    tmp = np.empty((H, B), dtype=hs.dtype)
    for t in range(T - 1, -1, -1):
        dh += dhs[t]
        h = hs[t]
        np.multiply(h, h, out=tmp)  # tanh' = 1 − h²
        np.subtract(1.0, tmp, out=tmp)
        np.multiply(dh, tmp, out=da[t])
        np.matmul(w.T, da[t], out=dh)  # into h_{t−1}
    da_flat = _time_to_flat(da)
    dw = da_flat @ _prev_states_flat(h0, hs).T
    return da, da_flat, (dh,), {"w_hh": dw}


# ----------------------------------------------------------------------------------------
# LSTM (PyTorch gate order i, f, g, o):
#   i, f, o = σ(a_i), σ(a_f), σ(a_o);  g = tanh(a_g)
#   c_t = f ⊙ c_{t−1} + i ⊙ g;         h_t = o ⊙ tanh(c_t)


def lstm_forward(xp, state, rec):
    h0, c0 = state
    w = rec["w_hh"]  # (4H, H)
    T, G, B = xp.shape
    H = G // 4
    gates = np.empty((T, G, B), dtype=xp.dtype)  # post-activation i, f, g, o
    cs = np.empty((T, H, B), dtype=xp.dtype)
    tcs = np.empty((T, H, B), dtype=xp.dtype)  # tanh(c_t)
    hs = np.empty((T, H, B), dtype=xp.dtype)
    tmp = np.empty((H, B), dtype=xp.dtype)
    h, c = h0, c0
    for t in range(T):
        a = np.matmul(w, h, out=gates[t])  # (4H, B)
        a += xp[t]
        _sigmoid_with_tanh_block_(a, 2 * H, 3 * H)
        i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
        ct = cs[t]
        np.multiply(f, c, out=ct)
        np.multiply(i, g, out=tmp)
        ct += tmp
        np.tanh(ct, out=tcs[t])
        h = np.multiply(o, tcs[t], out=hs[t])
        c = ct
    cache = (h0, c0, gates, cs, tcs, hs, rec)
    return hs, (hs[-1].copy(), cs[-1].copy()), cache


def lstm_backward(dhs, dstate, cache):
    h0, c0, gates, cs, tcs, hs, rec = cache
    w = rec["w_hh"]
    T, G, B = gates.shape
    H = G // 4
    dg_all = np.empty_like(gates)  # dL/d(pre-activations), = dxp
    dh = dstate[0].copy()
    dc = dstate[1].copy()
    tmp = np.empty((H, B), dtype=gates.dtype)
    deriv = np.empty((G, B), dtype=gates.dtype)
    for t in range(T - 1, -1, -1):
        a = gates[t]
        i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
        c_prev = cs[t - 1] if t > 0 else c0
        tc = tcs[t]
        d = dg_all[t]
        di, df, dgg, do = d[:H], d[H : 2 * H], d[2 * H : 3 * H], d[3 * H :]
        dh += dhs[t]
        np.multiply(dh, tc, out=do)  # h = o ⊙ tanh(c)  → do
        np.multiply(tc, tc, out=tmp)  # → dc through tanh(c)
        np.subtract(1.0, tmp, out=tmp)
        tmp *= o
        tmp *= dh
        dc += tmp
        np.multiply(dc, g, out=di)  # c = f ⊙ c_prev + i ⊙ g → di, df, dg
        np.multiply(dc, c_prev, out=df)
        np.multiply(dc, i, out=dgg)
        dc *= f  # → dc_{t−1}
        # gate derivatives: σ' = s(1 − s) on i, f, o; tanh' = 1 − g² on g
        np.multiply(a, a, out=deriv)
        np.subtract(a, deriv, out=deriv)
        dblk = deriv[2 * H : 3 * H]
        np.multiply(g, g, out=dblk)
        np.subtract(1.0, dblk, out=dblk)
        d *= deriv
        np.matmul(w.T, d, out=dh)  # into h_{t−1}
    d_flat = _time_to_flat(dg_all)
    dw = d_flat @ _prev_states_flat(h0, hs).T
    return dg_all, d_flat, (dh, dc), {"w_hh": dw}


# ----------------------------------------------------------------------------------------
# Peephole LSTM (Gers & Schmidhuber 2000), diagonal peepholes p (3, H) for i, f, o:
#   i = σ(a_i + p_i ⊙ c_{t−1}),  f = σ(a_f + p_f ⊙ c_{t−1}),  g = tanh(a_g)
#   c_t = f ⊙ c_{t−1} + i ⊙ g,    o = σ(a_o + p_o ⊙ c_t),      h_t = o ⊙ tanh(c_t)


def peephole_forward(xp, state, rec):
    h0, c0 = state
    w, p = rec["w_hh"], rec["peep"]  # (4H, H), (3, H)
    T, G, B = xp.shape
    H = G // 4
    pi, pf, po = p[0][:, None], p[1][:, None], p[2][:, None]  # (H, 1)
    gates = np.empty((T, G, B), dtype=xp.dtype)
    cs = np.empty((T, H, B), dtype=xp.dtype)
    tcs = np.empty((T, H, B), dtype=xp.dtype)
    hs = np.empty((T, H, B), dtype=xp.dtype)
    tmp = np.empty((H, B), dtype=xp.dtype)
    h, c = h0, c0
    for t in range(T):
        a = np.matmul(w, h, out=gates[t])
        a += xp[t]
        ai, af, ag, ao = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
        np.multiply(pi, c, out=tmp)
        ai += tmp
        np.multiply(pf, c, out=tmp)
        af += tmp
        _sigmoid_with_tanh_block_(a[: 3 * H], 2 * H, 3 * H)
        ct = cs[t]
        np.multiply(af, c, out=ct)  # af now holds f, ai holds i, ag holds g
        np.multiply(ai, ag, out=tmp)
        ct += tmp
        np.multiply(po, ct, out=tmp)
        ao += tmp
        sigmoid_(ao)
        np.tanh(ct, out=tcs[t])
        h = np.multiply(ao, tcs[t], out=hs[t])
        c = ct
    cache = (h0, c0, gates, cs, tcs, hs, rec)
    return hs, (hs[-1].copy(), cs[-1].copy()), cache


def peephole_backward(dhs, dstate, cache):
    h0, c0, gates, cs, tcs, hs, rec = cache
    w, p = rec["w_hh"], rec["peep"]
    T, G, B = gates.shape
    H = G // 4
    pi, pf, po = p[0][:, None], p[1][:, None], p[2][:, None]
    dg_all = np.empty_like(gates)
    dh = dstate[0].copy()
    dc = dstate[1].copy()
    tmp = np.empty((H, B), dtype=gates.dtype)
    deriv = np.empty((G, B), dtype=gates.dtype)
    for t in range(T - 1, -1, -1):
        a = gates[t]
        i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
        c_prev = cs[t - 1] if t > 0 else c0
        tc = tcs[t]
        d = dg_all[t]
        di, df, dgg, do = d[:H], d[H : 2 * H], d[2 * H : 3 * H], d[3 * H :]
        np.multiply(a, a, out=deriv)  # σ' on all blocks, tanh' on g
        np.subtract(a, deriv, out=deriv)
        dblk = deriv[2 * H : 3 * H]
        np.multiply(g, g, out=dblk)
        np.subtract(1.0, dblk, out=dblk)
        dh += dhs[t]
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
        np.matmul(w.T, d, out=dh)
    d_flat = _time_to_flat(dg_all)
    dw = d_flat @ _prev_states_flat(h0, hs).T
    c_prev_all = np.concatenate([c0[None], cs[:-1]])  # (T, H, B)
    dp = np.empty_like(p)
    dp[0] = np.einsum("thb,thb->h", dg_all[:, :H], c_prev_all)
    dp[1] = np.einsum("thb,thb->h", dg_all[:, H : 2 * H], c_prev_all)
    dp[2] = np.einsum("thb,thb->h", dg_all[:, 3 * H :], cs)
    return dg_all, d_flat, (dh, dc), {"w_hh": dw, "peep": dp}


# ----------------------------------------------------------------------------------------
# CIFG LSTM (coupled input and forget gates), gate order i, g, o and f = 1 − i:
#   c_t = (1 − i) ⊙ c_{t−1} + i ⊙ g = c_{t−1} + i ⊙ (g − c_{t−1});  h_t = o ⊙ tanh(c_t)


def cifg_forward(xp, state, rec):
    h0, c0 = state
    w = rec["w_hh"]  # (3H, H)
    T, G, B = xp.shape
    H = G // 3
    gates = np.empty((T, G, B), dtype=xp.dtype)  # post-activation i, g, o
    cs = np.empty((T, H, B), dtype=xp.dtype)
    tcs = np.empty((T, H, B), dtype=xp.dtype)
    hs = np.empty((T, H, B), dtype=xp.dtype)
    h, c = h0, c0
    for t in range(T):
        a = np.matmul(w, h, out=gates[t])
        a += xp[t]
        _sigmoid_with_tanh_block_(a, H, 2 * H)
        i, g, o = a[:H], a[H : 2 * H], a[2 * H :]
        ct = cs[t]
        np.subtract(g, c, out=ct)
        ct *= i
        ct += c
        np.tanh(ct, out=tcs[t])
        h = np.multiply(o, tcs[t], out=hs[t])
        c = ct
    cache = (h0, c0, gates, cs, tcs, hs, rec)
    return hs, (hs[-1].copy(), cs[-1].copy()), cache


def cifg_backward(dhs, dstate, cache):
    h0, c0, gates, cs, tcs, hs, rec = cache
    w = rec["w_hh"]
    T, G, B = gates.shape
    H = G // 3
    dg_all = np.empty_like(gates)
    dh = dstate[0].copy()
    dc = dstate[1].copy()
    tmp = np.empty((H, B), dtype=gates.dtype)
    deriv = np.empty((G, B), dtype=gates.dtype)
    for t in range(T - 1, -1, -1):
        a = gates[t]
        i, g, o = a[:H], a[H : 2 * H], a[2 * H :]
        c_prev = cs[t - 1] if t > 0 else c0
        tc = tcs[t]
        d = dg_all[t]
        di, dgg, do = d[:H], d[H : 2 * H], d[2 * H :]
        dh += dhs[t]
        np.multiply(dh, tc, out=do)
        np.multiply(tc, tc, out=tmp)
        np.subtract(1.0, tmp, out=tmp)
        tmp *= o
        tmp *= dh
        dc += tmp
        np.subtract(g, c_prev, out=di)  # c = c_prev + i ⊙ (g − c_prev)
        di *= dc
        np.multiply(dc, i, out=dgg)
        dc -= dgg  # dc_{t−1} = dc ⊙ (1 − i)
        np.multiply(a, a, out=deriv)
        np.subtract(a, deriv, out=deriv)
        dblk = deriv[H : 2 * H]
        np.multiply(g, g, out=dblk)
        np.subtract(1.0, dblk, out=dblk)
        d *= deriv
        np.matmul(w.T, d, out=dh)
    d_flat = _time_to_flat(dg_all)
    dw = d_flat @ _prev_states_flat(h0, hs).T
    return dg_all, d_flat, (dh, dc), {"w_hh": dw}


# ----------------------------------------------------------------------------------------
# GRU (PyTorch's formulation), gate order r, z, n:
#   r = σ(a_r + W_hr h + b_hr),  z = σ(a_z + W_hz h + b_hz)
#   n = tanh(a_n + r ⊙ (W_hn h + b_hn)),  h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}
# The caller folds b_hr and b_hz into xp; b_hn stays inside (it is gated by r).


def gru_forward(xp, state, rec):
    (h0,) = state
    w, b_hh = rec["w_hh"], rec["b_hh"]  # (3H, H), (3H,)
    T, G, B = xp.shape
    H = G // 3
    b_hn = b_hh[2 * H :][:, None]  # (H, 1)
    gates = np.empty((T, G, B), dtype=xp.dtype)  # post-activation r, z, n
    hns = np.empty((T, H, B), dtype=xp.dtype)  # W_hn h_{t−1} + b_hn
    hs = np.empty((T, H, B), dtype=xp.dtype)
    ah = np.empty((G, B), dtype=xp.dtype)
    h = h0
    for t in range(T):
        np.matmul(w, h, out=ah)
        a = gates[t]
        np.add(xp[t, : 2 * H], ah[: 2 * H], out=a[: 2 * H])
        np.add(ah[2 * H :], b_hn, out=hns[t])
        r, z, n = a[:H], a[H : 2 * H], a[2 * H :]
        sigmoid_(a[: 2 * H])
        np.multiply(r, hns[t], out=n)
        n += xp[t, 2 * H :]
        np.tanh(n, out=n)
        ht = hs[t]
        np.subtract(h, n, out=ht)  # h_t = n + z ⊙ (h_{t−1} − n)
        ht *= z
        ht += n
        h = ht
    return hs, (hs[-1].copy(),), (h0, gates, hns, hs, rec)


def gru_backward(dhs, dstate, cache):
    h0, gates, hns, hs, rec = cache
    w = rec["w_hh"]
    T, G, B = gates.shape
    H = G // 3
    dx_all = np.empty_like(gates)  # dL/d(xp): r, z, n pre-activations
    dh_all = np.empty_like(gates)  # dL/d(W_hh h + b_hh)
    dh = dstate[0].copy()
    tmp = np.empty((H, B), dtype=gates.dtype)
    for t in range(T - 1, -1, -1):
        a = gates[t]
        r, z, n = a[:H], a[H : 2 * H], a[2 * H :]
        h_prev = hs[t - 1] if t > 0 else h0
        dx = dx_all[t]
        dar, daz, dan = dx[:H], dx[H : 2 * H], dx[2 * H :]
        dh += dhs[t]
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
        dhh = dh_all[t]
        dhh[: 2 * H] = dx[: 2 * H]
        np.multiply(dan, r, out=dhh[2 * H :])
        dh *= z  # direct path z ⊙ h_prev, plus the recurrent product
        dh += np.matmul(w.T, dhh, out=tmp)
    dx_flat = _time_to_flat(dx_all)
    dh_flat = _time_to_flat(dh_all)
    dw = dh_flat @ _prev_states_flat(h0, hs).T
    db = dh_flat.sum(axis=1)
    return dx_all, dx_flat, (dh,), {"w_hh": dw, "b_hh": db}


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


CELLS: dict[str, CellSpec] = {
    "lstm": CellSpec("lstm", 4, 2, ("i", "f", "g", "o", "c", "h"), lstm_forward, lstm_backward),
    "peephole": CellSpec(
        "peephole", 4, 2, ("i", "f", "g", "o", "c", "h"), peephole_forward, peephole_backward
    ),
    "cifg": CellSpec("cifg", 3, 2, ("i", "f", "g", "o", "c", "h"), cifg_forward, cifg_backward),
    "gru": CellSpec("gru", 3, 1, ("r", "z", "n", "h"), gru_forward, gru_backward),
    "rnn": CellSpec("rnn", 1, 1, ("h",), rnn_forward, rnn_backward),
}


def trace_quantities(cell: str, cache) -> dict[str, np.ndarray]:
    """Per-step activations from a forward cache, each (T, H, B)."""
    if cell == "rnn":
        return {"h": cache[1]}
    if cell == "gru":
        _, gates, _, hs, _ = cache
        H = hs.shape[1]
        return {"r": gates[:, :H], "z": gates[:, H : 2 * H], "n": gates[:, 2 * H :], "h": hs}
    _, _, gates, cs, _, hs, _ = cache
    H = hs.shape[1]
    if cell == "cifg":
        i = gates[:, :H]
        return {"i": i, "f": 1.0 - i, "g": gates[:, H : 2 * H], "o": gates[:, 2 * H :],
                "c": cs, "h": hs}
    return {"i": gates[:, :H], "f": gates[:, H : 2 * H], "g": gates[:, 2 * H : 3 * H],
            "o": gates[:, 3 * H :], "c": cs, "h": hs}
