"""How far back a prediction reaches: the influence of each character read on each guess.

For a text x_0 … x_{N−1} read as ``eval`` reads it (zero initial state, no dropout), the influence
of character s on the prediction made after reading character t (s ≤ t) is

    I(t, s) = ‖∂ ln p(x_{t+1} | x_≤t) / ∂ e_s‖₂

where e_s is the vector layer 0 reads for x_s (its embedding row). A plain RNN multiplies the
gradient by a Jacobian at every step back, so I(t, t − d) shrinks (or grows) geometrically in d:
the vanishing gradient; the LSTM's cell state and the GRU's update gate keep a path open.

All (t, s) pairs with t − s ≤ D come from the model's own backward pass, in batches of windows: row
t reads x_{t−W+1} … x_t (W = D + 1) from the true state before the window (from one pass over the
whole text), the loss is ln p(x_{t+1}) at its last position, and one backward pass gives
∂/∂(layer 0's input projection) at every position of every row; W_ihᵀ of that is ∂/∂e_s. The
first W rows read the text from its start instead (the loss at position t), so every row is exact.

A bidirectional model predicts x_t from both sides: its left influence (d = t − s ≥ 1) runs through
the forward stack, its right influence (d = s − t ≥ 1) through the backward stack, whose windows
read the text right to left; d = 0 is 0 (the model does not read x_t).

Shapes: N text, W window, B rows of a batch, H hidden, G·H gates, E embedding, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lstmgen.errors import CorpusError
from lstmgen.model import CharLM
from lstmgen.networks.layers import stack_backward, stack_forward
from lstmgen.networks.losses import softmax

ROWS = 256  # windows per backward pass (memory: G·H · W · ROWS values per layer)
PAGE_DISTANCE = 50  # how far back (and ahead) the explorer page shows a guess's influence


@dataclass
class Influence:
    """Per target position t, the influence of the characters d = 0 … D before it (``left``, (T, D+1),
    NaN where s < 0) and, for a bidirectional model, after it (``right``, (T, D+1), NaN past the end)."""

    left: np.ndarray
    right: np.ndarray | None = None

    def curve(self, side: str = "left") -> np.ndarray:
        """(D+1,): per distance d, the median over the targets that have a character at that distance."""
        m = self.left if side == "left" else self.right
        out = np.zeros(m.shape[1])
        for d in range(m.shape[1]):
            col = m[:, d][~np.isnan(m[:, d])]
            out[d] = float(np.median(col)) if len(col) else np.nan
        return out


def span(curve: np.ndarray, ref: int) -> int | None:
    """The smallest d > ref whose influence is below 1 % of the influence at d = ``ref`` (None: never)."""
    below = [d for d in range(ref + 1, len(curve)) if np.isfinite(curve[d]) and curve[d] < 0.01 * curve[ref]]
    return below[0] if below else None


def report(model: CharLM, ids: np.ndarray, max_distance: int = 50, checkpoint: str = "") -> dict:
    """One model's entry of ``lstmgen memory --json``: per distance the median influence (``influence``;
    a bidirectional model's left side, with ``influence_right``), and the span (against d = 0; a
    bidirectional model, which does not read the character it predicts, against d = 1)."""
    if len(ids) < 2:
        raise CorpusError(f"the text needs at least 2 characters, it has {len(ids)}")
    found = influence(model, ids, max_distance)
    bi = model.network.both_sides
    left = found.curve("left")
    entry = {"checkpoint": checkpoint, "model": model.cfg.summary(), "chars": len(ids),
             "influence": _numbers(left), "span": span(left, 1 if bi else 0)}
    if bi:
        right = found.curve("right")
        entry["influence_right"] = _numbers(right)
        entry["span_right"] = span(right, 1)
    return entry


def _numbers(curve: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(f"{v:.6g}") for v in curve]


def influence(model: CharLM, ids: np.ndarray, max_distance: int = 50, warmup: int = 0,
              on_rows: Callable[[int], None] | None = None) -> Influence:
    """The influence matrix of a text ids (N,) under the model (see the module's docstring). With
    ``warmup``, the first ``warmup`` characters are read as context only: no rows for the guesses
    made while reading them (their columns still count, as characters the later guesses read).
    ``on_rows(n)`` reports progress in guesses."""
    ids = np.asarray(ids, dtype=np.int64)
    report_ = on_rows or (lambda n: None)
    if model.network.both_sides:  # left and right influence, through the two stacks
        found = _bidirectional(model, ids, max_distance, report_)
        return Influence(found.left[warmup:], found.right[warmup:])
    return Influence(_forward_lm(model, ids, max_distance, report_)[warmup:])


# ---------------------------------------------------------------------- a left-to-right model
def _states_after(model: CharLM, ids: np.ndarray) -> list[list[np.ndarray]]:
    """Per layer and state part, (N, rows) arrays: the state right after reading x_s, from one pass."""
    traced = model.trace(ids, chunk=None)
    return [[traced.probs if part == "y" else traced.layers[k][part] for part, _ in parts]
            for k, parts in enumerate(model.network.state_layout())]


def _window_state(model: CharLM, after: list[list[np.ndarray]], starts: np.ndarray):
    """The state before each window (columns: rows), zero where the window starts the text."""
    state = model.zero_state(len(starts))
    have = starts > 0
    for k, parts in enumerate(after):
        for j, a in enumerate(parts):
            state[k][j][:, have] = a[starts[have] - 1].T
    return state


def _forward_lm(model: CharLM, ids: np.ndarray, D: int, on_rows) -> np.ndarray:
    params, net = model.params, model.network
    N = len(ids)
    out = np.full((max(N - 1, 0), D + 1), np.nan)
    if N < 2:
        return out
    W = min(D + 1, N - 1)
    after = _states_after(model, ids)
    w_ih = params["rnn.weight_ih_l0"]  # (G·H, E)
    _, grads = model.new_grads()
    for lo in range(0, N - 1, ROWS):
        targets = np.arange(lo, min(N - 1, lo + ROWS))  # t: the prediction of x_{t+1}
        starts = np.maximum(targets - W + 1, 0)
        pos = targets - starts  # where the loss is, in each window
        x = ids[starts[:, None] + np.arange(W)[None, :]]  # (B, W)
        B = len(targets)
        logits, _, cache = net.forward(params, x, _window_state(model, after, starts), None)
        cols = pos * B + np.arange(B)
        dlogits = np.zeros_like(logits)
        dlogits[:, cols] = softmax(logits[:, cols].astype(np.float64)).astype(logits.dtype)
        dlogits[ids[targets + 1], cols] -= 1.0  # d(−ln p(x_{t+1})) / d logits
        d_input: list = []
        net.backward(params, dlogits, cache, grads, None, d_input=d_input)
        norms = _embedding_norms(w_ih, d_input[0], W, B)  # (W, B)
        for b in range(B):
            p = pos[b]
            out[targets[b], : p + 1] = norms[p::-1, b]  # d = 0 … p
        on_rows(B)
    return out


def _embedding_norms(w_ih: np.ndarray, d_flat: np.ndarray, W: int, B: int) -> np.ndarray:
    """‖W_ihᵀ d‖ for every column of d_flat (G·H, W·B) — the gradient w.r.t. each position's embedded
    character — as (W, B), in the model's precision."""
    g = w_ih.T @ d_flat  # (E, W·B)
    return np.sqrt(np.einsum("ij,ij->j", g, g)).astype(np.float64).reshape(W, B)


# ---------------------------------------------------------------------- a bidirectional model
def _bidirectional(model: CharLM, ids: np.ndarray, D: int, on_rows) -> Influence:
    cfg, params = model.cfg, model.params
    N, H = len(ids), cfg.hidden
    traced = model.trace(ids)  # per layer (N, H) quantities of both stacks; cloze probs (N, V)
    fwd, bwd, probs = traced.layers, traced.reverse, traced.probs
    dz = probs.astype(np.float64).copy()
    dz[np.arange(N), ids] -= 1.0  # d(−ln p(x_t)) / d logits_t, (N, V)
    dec = params["decoder.weight"].astype(np.float64)
    left = _stack_side(model, ids, fwd, (dz @ dec[:, :H]), D, "", lambda n: on_rows(n // 2))
    right = _stack_side(model, ids[::-1].copy(), [{q: a[::-1] for q, a in layer.items()} for layer in bwd],
                        (dz @ dec[:, H:])[::-1], D, "_reverse", lambda n: on_rows(n - n // 2))[::-1]
    return Influence(left, right)


def _stack_side(model: CharLM, ids: np.ndarray, layers: list[dict], dtop: np.ndarray, D: int, sfx: str,
                on_rows) -> np.ndarray:
    """One stack of a bidirectional model, reading ids in its own order: the prediction at position t
    reads the stack's top state after x_{t−1}, with gradient dtop[t] (H,). Returns (N, D+1): the
    influence of x_{t−d} (d ≥ 1; column 0 and characters before the text are 0 and NaN)."""
    cfg, params = model.cfg, model.params
    N = len(ids)
    out = np.full((N, D + 1), np.nan)
    out[:, 0] = 0.0  # the model does not read the character it predicts
    if N < 2 or D < 1:
        return out
    W = min(D, N - 1)
    parts = [[layers[k][part] for part, _ in p] for k, p in enumerate(model.network.state_layout())]
    w_ih = params[f"rnn.weight_ih_l0{sfx}"]
    for lo in range(1, N, ROWS):
        targets = np.arange(lo, min(N, lo + ROWS))  # t ≥ 1: something on this side
        ends = targets - 1  # the last character read
        starts = np.maximum(ends - W + 1, 0)
        pos = ends - starts
        B = len(targets)
        x = np.ascontiguousarray(ids[starts[:, None] + np.arange(W)[None, :]].T)  # (W, B) time-major
        _, hbuf, _, cache = stack_forward(cfg, params, x, _window_state(model, parts, starts), None, sfx,
                                          mask_top=False)
        dout = np.zeros((cfg.hidden, W, B), dtype=hbuf.dtype)
        dout[:, pos, np.arange(B)] = dtop[targets].T
        _, grads = model.new_grads()
        d_input: list = []
        stack_backward(cfg, params, dout.reshape(cfg.hidden, -1), cache, x, grads, None, sfx, d_input=d_input)
        norms = _embedding_norms(w_ih, d_input[0], W, B)
        for b in range(B):
            p = pos[b]
            out[targets[b], 1 : p + 2] = norms[p::-1, b]  # d = 1 … p + 1
        on_rows(B)
    return out
