"""Evaluation: the held-out loss of a model over a text, and whether a loss says a run has diverged."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from lstmgen.model import CharLM


def validation_rows(network, val_ids: np.ndarray, streams: int, chunk: int,
                    limit: int) -> tuple[np.ndarray, np.ndarray]:
    """What each validation reads: the held-out tail cut into ≤ ``streams`` rows x, y (S, n), each read
    from a zero state; with ``limit`` > 0 each row cut to its first limit ÷ S characters — evenly spaced
    spans of the whole tail, the same at every evaluation, so that best.npz stays comparable."""
    x, y = network.eval_rows(val_ids, streams, chunk)
    if limit and x.size > limit:
        rows = min(x.shape[0], limit)  # (a limit below the row count: fewer rows, one character each)
        n = limit // rows
        x, y = x[:rows, :n], y[:rows, :n]
    return x, y


def evaluate_ids(model: CharLM, ids: np.ndarray, streams: int = 1, chunk: int = 256,
                 should_stop: Callable[[], bool] | None = None) -> float:
    """Mean −ln p(x_t | x_<t) over ids split into ``streams`` rows, each from a zero state.

    With streams = 1 this is exactly the contract's eval: the whole text as one sequence. For a
    bidirectional model: −ln p(x_t | x_<t, x_>t) over every character, each stack in one pass.
    """
    x, y = model.network.eval_rows(ids, streams, chunk)
    sums = model.sum_losses(x, y, chunk, should_stop)
    return math.nan if sums is None else sums[0] / max(sums[1], 1)


def divergence_limit(vocab_size: int) -> float:
    """The loss (nats per character) above which a run has diverged, whatever the CPU.

    A model that knows nothing (uniform guesses) scores ln V; healthy training starts there and
    only goes down, with early spikes of a few nats at most. Ten times that, plus 10 nats (for
    tiny vocabularies, where ln V is small), means the model gives the right character a
    probability below e^−(10 ln V + 10) = V^−10 · e^−10 on average: garbage weights, even where
    float32 saturates instead of overflowing to inf (CPUs differ there).
    """
    return 10.0 * math.log(max(vocab_size, 2)) + 10.0


def divergence(loss: float, vocab_size: int, what: str = "loss") -> str | None:
    """Why a loss says the run has diverged (non-finite, or far above ln V), or None if it is healthy."""
    if not math.isfinite(loss):
        return f"the {what} is not finite"
    limit = divergence_limit(vocab_size)
    if loss > limit:
        return (f"the {what} is {loss:.3g} nats per character, far above ln V = {math.log(vocab_size):.2f} "
                f"(what a model that knows nothing scores; limit {limit:.1f})")
    return None
