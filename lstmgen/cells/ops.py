"""The pieces every cell shares: sigmoid and tanh in place, their derivatives, the (H, T+1, B)
output buffer, the bulk copy of time-major (T, F, B) gradients to the feature-major (F, T·B) matrix,
the (F, T, B) → (F, T·B) view, the weight gradient as one GEMM, and the sequence forward of the
cells with a cell state."""

from __future__ import annotations

import numpy as np


def sigmoid_(a: np.ndarray) -> np.ndarray:
    """σ(a) in place. exp(−a) may overflow to inf for very negative a; 1/(1+inf) = 0 is right."""
    np.negative(a, out=a)
    np.exp(a, out=a)
    a += 1.0
    np.reciprocal(a, out=a)
    return a


def sigmoid_with_tanh_block_(a: np.ndarray, lo: int, hi: int) -> None:
    """σ over all rows of ``a`` in place, except rows lo:hi which get tanh (via 2σ(2x) − 1)."""
    blk = a[lo:hi]
    blk *= 2.0
    sigmoid_(a)
    blk *= 2.0
    blk -= 1.0


def gate_derivatives(a: np.ndarray, deriv: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Backward of ``sigmoid_with_tanh_block_``: from post-activations a, σ' = s(1 − s) on all
    rows into ``deriv``, except rows lo:hi (tanh) which get 1 − g²."""
    np.multiply(a, a, out=deriv)
    np.subtract(a, deriv, out=deriv)
    blk = deriv[lo:hi]
    np.multiply(a[lo:hi], a[lo:hi], out=blk)
    np.subtract(1.0, blk, out=blk)
    return deriv


def new_hbuf(h0: np.ndarray, T: int) -> np.ndarray:
    """(H, T+1, B) output buffer whose slot 0 holds the initial state."""
    H, B = h0.shape
    hbuf = np.empty((H, T + 1, B), dtype=h0.dtype)
    hbuf[:, 0] = h0
    return hbuf


def feature_major(x: np.ndarray) -> np.ndarray:
    """(T, F, B) → (F, T·B) contiguous: a backward pass's per-step gradients, written a whole step at
    a time, as the one matrix the weight-gradient and input-projection GEMMs read. (Written per step
    into a (F, t, B) slice — F rows of B floats a whole row apart — they cost several times more and
    evict what the step's matrix product reads next: measured ~90 µs a step at H = 384, B = 16.)"""
    T, F, B = x.shape
    return np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(F, T * B)


def flat(x: np.ndarray) -> np.ndarray:
    """(F, T, B) → (F, T·B) without copying (a view whose rows may be strided)."""
    F, T, B = x.shape
    return x.reshape(F, T * B)


def weight_grad(d_flat: np.ndarray, hbuf: np.ndarray) -> np.ndarray:
    """dW_hh = Σ_t d_t h_{t−1}ᵀ as one GEMM: (G·H, T·B) @ (T·B, H)."""
    return d_flat @ flat(hbuf[:, :-1]).T


def cell_state_forward(xp, state, rec, step):
    """The sequence forward of a cell that carries a cell state c (lstm, peephole, cifg), from xp
    (T, G·H, B), consumed: step t's block already holds the input projection, the recurrent product
    W_hh h_{t−1} is added to it (from a scratch buffer), then ``step(a, c_prev, c_out, tc_out, h_out,
    tmp)`` turns it in place into the gates.

    Returns hbuf (H, T+1, B), the final (h, c), and the cache (gates (T, G, B), cs (T+1, H, B) with
    cs[0] = c_0, tcs (T, H, B) = tanh(c_t), hbuf, rec) that the cells' backward passes read.
    """
    h0, c0 = state
    w = rec["w_hh"]  # (G·H, H)
    T, G, B = xp.shape
    H = h0.shape[0]
    gates = xp  # (T, G, B): the input projections, then (in place) the post-activation gates
    cs = np.empty((T + 1, H, B), dtype=xp.dtype)
    tcs = np.empty((T, H, B), dtype=xp.dtype)
    hbuf = new_hbuf(h0, T)
    cs[0] = c0
    tmp = np.empty((H, B), dtype=xp.dtype)
    ah = np.empty((G, B), dtype=xp.dtype)
    for t in range(T):
        a = gates[t]
        a += np.matmul(w, hbuf[:, t], out=ah)  # (G·H, B)
        step(a, cs[t], cs[t + 1], tcs[t], hbuf[:, t + 1], tmp)
    return hbuf, (hbuf[:, T].copy(), cs[T].copy()), (gates, cs, tcs, hbuf, rec)
