"""The softmax and the losses every network kind shares.

Logits are (V, N): one column per position, the vocabulary down the rows.
"""

from __future__ import annotations

import numpy as np

from lstmgen.threads import column_spans, parallel_map


def softmax(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """softmax over axis 0 (the vocabulary) of z (V, …): a new array, or in ``out`` (which may be z)."""
    m = z.max(axis=0)
    e = np.subtract(z, m, out=out)
    np.exp(e, out=e)
    e /= e.sum(axis=0)
    return e


def logsumexp(z: np.ndarray) -> np.ndarray:
    """ln Σ_v exp(z_v) over axis 0 of z (V, N), without overflow: (N,)."""
    m = z.max(axis=0)
    return np.log(np.exp(z - m).sum(axis=0)) + m


def sum_logprob(logits: np.ndarray, targets: np.ndarray) -> float:
    """Σ −ln softmax(logits)[target] over the columns of logits (V, N), exact in log space (no
    underflow of tiny probabilities), summed in float64."""
    return float(np.sum(logsumexp(logits) - logits[targets, np.arange(logits.shape[1])], dtype=np.float64))


def softmax_xent_(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean −ln softmax(logits)[target] over columns; turns ``logits`` into its gradient in place.

    logits (V, N), targets (N,) → loss; afterwards logits holds (softmax − onehot(target)) / N.
    Large arrays are split into column spans, one per thread (exp is most of the cost).
    """
    V, N = logits.shape
    scale = logits.dtype.type(1.0 / N)

    def span(lo_hi: tuple[int, int]) -> float:
        lo, hi = lo_hi
        a = logits[:, lo:hi]  # (V, n) view
        cols, tgt = np.arange(hi - lo), targets[lo:hi]
        m = a.max(axis=0)
        if not -60.0 < m.min() <= m.max() < 60.0:  # exp could overflow or z underflow: shift
            a -= m  # (softmax is shift-invariant; a pass saved when logits are moderate)
        picked = a[tgt, cols]  # log-space: no underflow for improbable targets
        np.exp(a, out=a)
        z = a.sum(axis=0)
        a *= scale / z
        a[tgt, cols] -= scale
        return float(np.sum(np.log(z) - picked, dtype=np.float64))

    spans = column_spans(N, min_cols=max(1, 2**19 // V))  # threads pay off from ~0.5 M elements
    return sum(parallel_map(span, spans)) / N
