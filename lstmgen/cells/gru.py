"""The GRU cell (PyTorch's formulation), gate order r, z, n:

    r = σ(a_r + W_hr h + b_hr),  z = σ(a_z + W_hz h + b_hz)
    n = tanh(a_n + r ⊙ (W_hn h + b_hn)),  h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}

The caller folds b_hr and b_hz into xp; b_hn stays inside (it is gated by r).
Shapes and conventions: see ``lstmgen.cells``."""

from __future__ import annotations

import numpy as np

from lstmgen.cells.ops import feature_major, new_hbuf, sigmoid_, weight_grad
from lstmgen.cells.spec import CellSpec


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
    T, G, B = xp.shape
    H = G // 3
    b_hn = b_hh[2 * H :][:, None]  # (H, 1)
    gates = np.empty((T, G, B), dtype=xp.dtype)  # post-activation r, z, n
    hns = np.empty((T, H, B), dtype=xp.dtype)  # W_hn h_{t−1} + b_hn
    hbuf = new_hbuf(h0, T)
    ah = np.empty((G, B), dtype=xp.dtype)
    tmp = np.empty((H, B), dtype=xp.dtype)
    for t in range(T):
        np.matmul(w, hbuf[:, t], out=ah)
        gru_step(xp[t], ah, b_hn, hbuf[:, t], gates[t], hns[t], hbuf[:, t + 1], tmp)
    return hbuf, (hbuf[:, T].copy(),), (gates, hns, hbuf, rec)


def gru_backward(dhs, dstate, cache):
    gates, hns, hbuf, rec = cache
    w = rec["w_hh"]
    T, G, B = gates.shape
    H = G // 3
    dx3 = np.empty((T, G, B), dtype=gates.dtype)  # dL/d(xp): r, z, n pre-activations (time-major)
    dh3 = np.empty((T, G, B), dtype=gates.dtype)  # dL/d(W_hh h + b_hh)
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
        dx3[t] = dx
        dhh = dh3[t]
        dhh[: 2 * H] = dx[: 2 * H]
        np.multiply(dan, r, out=dhh[2 * H :])
        dh *= z  # direct path z ⊙ h_prev, plus the recurrent product
        dh += np.matmul(w.T, dhh, out=tmp)
    dh_flat = feature_major(dh3)
    grads = {"w_hh": weight_grad(dh_flat, hbuf), "b_hh": dh_flat.sum(axis=1)}
    return feature_major(dx3), (dh,), grads


def gru_trace(cache) -> dict[str, np.ndarray]:
    """Per-step activations from a forward cache, each (T, H, B): r, z, n, h."""
    gates, _, hbuf, _ = cache
    H = hbuf.shape[0]
    return {"r": gates[:, :H], "z": gates[:, H : 2 * H], "n": gates[:, 2 * H :], "h": hbuf[:, 1:].transpose(1, 0, 2)}


def _step(a, ah, h, c, rec, s):  # the stepper's step: a = W_ih x + b, ah = W_hh h (r gates W_hn h)
    H = h.shape[0]
    gru_step(a, ah, rec["b_hh"][2 * H :, None], h, s.gates, s.hn, h, s.tmp)


SPEC = CellSpec(name="gru", gates=3, states=("h",), quantities=("r", "z", "n", "h"), gate_blocks="rzn",
                keep_gate="z", sigmoid="rz", forward=gru_forward, backward=gru_backward, step=_step, trace=gru_trace,
                fused_step=False, recurrent={"w_hh": "weight_hh", "b_hh": "bias_hh"}, bias_kept=1)
