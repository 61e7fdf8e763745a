"""Sampling text from a model: temperature, top-k, top-p, priming, stop strings, streaming."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from lstmgen.errors import ConfigError
from lstmgen.model import CharLM
from lstmgen.text import Vocab


def check_options(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not temperature >= 0 or not np.isfinite(temperature):
        raise ConfigError(f"--temperature must be ≥ 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ConfigError(f"--top-p must be in (0, 1], got {top_p}")


def pick(logits: np.ndarray, rng: np.random.Generator, temperature: float = 1.0,
         top_k: int | None = None, top_p: float | None = None) -> int:
    """One character id from logits (V,): greedy at temperature 0, else a filtered softmax draw."""
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < z.size:
        cut = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= cut, z, -np.inf)
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cum, top_p)) + 1]  # smallest set with mass ≥ top_p
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    cdf = np.cumsum(p)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), p.size - 1))


def generate(model: CharLM, vocab: Vocab, length: int, *, prime: str = "", temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, rng: np.random.Generator,
             stop: str | None = None) -> Iterator[str]:
    """Yield ``length`` generated characters one by one (the prime is not yielded).

    The prime text is fed first; without one the model starts from a newline (or the first
    character of the vocabulary) and a zero state. With ``stop``, generation ends right after
    the stop string has been produced.
    """
    ids = vocab.encode(prime, "prime text") if prime else None
    stepper = model.stepper(1)
    if ids is None or len(ids) == 0:
        ids = np.array([vocab.index.get("\n", 0)])
    for i in ids[:-1]:
        stepper.step(np.array([i]))
    nxt = int(ids[-1])
    tail = ""
    for _ in range(length):
        logits = stepper.step(np.array([nxt]))[0]
        nxt = pick(logits, rng, temperature, top_k, top_p)
        ch = vocab.chars[nxt]
        yield ch
        if stop:
            tail = (tail + ch)[-len(stop):]
            if tail == stop:
                return
