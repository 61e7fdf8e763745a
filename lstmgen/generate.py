"""Sampling text from a model: temperature, top-k, top-p, priming, stop strings, streaming."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from lstmgen.errors import ConfigError
from lstmgen.model import CharLM
from lstmgen.text import Vocab


def check_options(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not temperature >= 0 or not np.isfinite(temperature):
        raise ConfigError(f"--temperature must be a finite number ≥ 0 (0: always the likeliest character), "
                          f"got {temperature}")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ConfigError(f"--top-p must be in (0, 1], got {top_p}")


TINY_T = 1e-30  # a temperature below this samples as 0 does (the likeliest character): 1/T would overflow


class Sampler:
    """Draws one character id per call from logits (V,): greedy at temperature 0, else Gumbel-max.

    argmax(z / T + g) with g = −ln(−ln u), u ~ U(0, 1), is an exact draw from softmax(z / T);
    the noise is drawn from ``rng`` in blocks, so a draw costs a few vector operations and no
    CDF. top-k keeps the K largest logits; top-p keeps the smallest set of likeliest
    characters whose probability reaches P (always at least one; characters tied with the
    last one kept are kept too).
    """

    def __init__(self, rng: np.random.Generator, vocab_size: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, block: int = 1024):
        check_options(temperature, top_k, top_p)
        self.rng, self.V, self.block = rng, vocab_size, block
        self.temperature = temperature if temperature >= TINY_T else 0.0
        self.top_k = top_k if top_k is not None and top_k < vocab_size else None
        self.top_p = top_p if top_p is not None and top_p < 1.0 else None
        self._noise = np.empty((0, vocab_size))
        self._row = 0
        self._z, self._zg, self._e = np.empty(vocab_size), np.empty(vocab_size), np.empty(vocab_size)
        self._mask = np.empty(vocab_size, dtype=bool)
        self.tries = 8
        self._hit, self._calls = 1.0, 0  # running share of first draws kept; calls so far

    def _gumbel(self) -> np.ndarray:
        if self._row == len(self._noise):
            u = self.rng.random((self.block, self.V))
            self._noise = -np.log(-np.log(np.maximum(u, 1e-300)))
            self._row = 0
        g = self._noise[self._row]
        self._row += 1
        return g

    def __call__(self, logits: np.ndarray) -> int:
        if self.temperature == 0:
            return int(np.argmax(logits))
        z = np.multiply(logits, 1.0 / self.temperature, out=self._z)  # float64
        if self.top_k is None and self.top_p is None:
            z += self._gumbel()
            return int(np.argmax(z))
        # Filtered: draw from the whole softmax and keep the draw if it is in the kept set.
        # Rejection sampling, so an accepted draw follows the renormalised truncated
        # distribution exactly; the likeliest character is always kept, so most draws cost one
        # comparison. After a few rejections (a flat distribution, a small K) the kept set is
        # built explicitly instead, and while most first draws are rejected it is built
        # directly (retrying rejection every 16th character). Which way is taken depends only on
        # earlier draws, so every character is an exact draw, and the same seed gives the same text.
        self._calls += 1
        if self._hit >= 0.5 or self._calls % 16 == 0:  # rejection pays while most first draws are kept
            zmax = z.max()
            for t in range(self.tries):
                i = int(np.argmax(np.add(z, self._gumbel(), out=self._zg)))
                if self._kept(z, i, zmax):
                    self._hit = 0.9 * self._hit + 0.1 * (t == 0)
                    return i
            self._hit *= 0.9
        return self._draw_from_kept_set(z)

    def _kept(self, z: np.ndarray, i: int, zmax: float) -> bool:
        zi = z[i]
        if zi == zmax:
            return True
        if self.top_k is not None and np.count_nonzero(z > zi) >= self.top_k:
            return False
        if self.top_p is not None:  # kept iff the characters likelier than i hold less than P
            e = np.exp(np.subtract(z, zmax, out=self._e), out=self._e)
            above = e @ np.greater(z, zi, out=self._mask)
            if above >= self.top_p * e.sum():
                return False
        return True

    def _draw_from_kept_set(self, z: np.ndarray) -> int:
        if self.top_p is None:
            keep = np.argpartition(z, -self.top_k)[-self.top_k :]
            return int(keep[np.argmax(z[keep] + self._gumbel()[: self.top_k])])
        order = np.argsort(-z)
        n_keep = self.V if self.top_k is None else self.top_k
        if self.top_p is not None:
            p = np.exp(z[order] - z[order[0]])
            above = np.concatenate([[0.0], np.cumsum(p)[:-1]])  # mass of the likelier characters
            n_keep = min(n_keep, int(np.count_nonzero(above < self.top_p * p.sum())))
        keep = order[:n_keep]
        return int(keep[np.argmax(z[keep] + self._gumbel()[:n_keep])])


def generate(model: CharLM, vocab: Vocab, length: int, *, prime: str = "", temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, rng: np.random.Generator,
             stop: str | None = None) -> Iterator[str]:
    """Yield ``length`` generated characters one by one (the prime is not yielded).

    The prime text is fed first; without one the model starts from a newline (or the first
    character of the vocabulary) and a zero state. With ``stop``, generation ends right after
    the stop string has been produced.
    """
    ids = vocab.encode(prime, "prime text") if prime else None
    sampler = Sampler(rng, len(vocab), temperature, top_k, top_p)
    stepper = model.stepper(1)
    if ids is None or len(ids) == 0:
        ids = np.array([vocab.start_id])
    for i in ids[:-1]:
        stepper.step(int(i))
    nxt = int(ids[-1])
    chars = vocab.chars
    tail = ""
    for _ in range(length):
        nxt = sampler(stepper.step(nxt)[0])
        ch = chars[nxt]
        yield ch
        if stop:
            tail = (tail + ch)[-len(stop):]
            if tail == stop:
                return


class BatchSampler:
    """One character id per row per call from logits (n, V), all rows at once, each row drawing its
    noise from its own generator: greedy at temperature 0, else Gumbel-max over the kept set.

    top-k keeps each row's K largest logits (ties with the K-th kept too), top-p the smallest set
    of likeliest characters whose probability reaches P; argmax(z / T + g) over the kept set is an
    exact draw from the renormalised truncated softmax. The noise is drawn per row in blocks (the
    same numbers ``Sampler`` would draw from that generator).
    """

    def __init__(self, rngs: list[np.random.Generator], vocab_size: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, steps: int | None = None):
        check_options(temperature, top_k, top_p)
        self.rngs, self.V, self.temperature = rngs, vocab_size, temperature if temperature >= TINY_T else 0.0
        self.top_k = top_k if top_k is not None and top_k < vocab_size else None
        self.top_p = top_p if top_p is not None and top_p < 1.0 else None
        self.block = int(min(1024, max(16, (1 << 22) // (len(rngs) * vocab_size))))  # ≤ 32 MB of noise
        if steps is not None:  # no more noise than the draws to come (short samples in many batches)
            self.block = max(1, min(self.block, steps))
        self._noise = np.empty((len(rngs), 0, vocab_size))
        self._k = 0
        self._rows = np.arange(len(rngs))

    def _gumbel(self) -> np.ndarray:
        if self._k == self._noise.shape[1]:
            self._noise = np.empty((len(self.rngs), self.block, self.V))
            for r, rng in enumerate(self.rngs):
                u = rng.random((self.block, self.V))
                self._noise[r] = -np.log(-np.log(np.maximum(u, 1e-300)))
            self._k = 0
        g = self._noise[:, self._k]
        self._k += 1
        return g  # (n, V)

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        if self.temperature == 0:
            return np.argmax(logits, axis=1)
        z = logits.astype(np.float64) * (1.0 / self.temperature)  # (n, V) float64
        drop = None
        if self.top_k is not None:  # below each row's K-th largest logit
            kth = np.partition(z, self.V - self.top_k, axis=1)[:, self.V - self.top_k, None]
            drop = z < kth
        if self.top_p is not None:  # below the last character needed to reach P
            zs = -np.sort(-z, axis=1)
            e = np.exp(zs - zs[:, :1])
            cum = np.cumsum(e, axis=1)
            n_keep = np.count_nonzero(cum - e < self.top_p * cum[:, -1:], axis=1)
            cut = z < zs[self._rows, n_keep - 1][:, None]
            drop = cut if drop is None else drop | cut
        z += self._gumbel()
        if drop is not None:
            z[drop] = -np.inf
        return np.argmax(z, axis=1)


MAX_BATCH = 256  # rows generated together: memory stays bounded whatever --num-samples is


def row_rngs(seed: int | np.random.SeedSequence | None, rows: range) -> list[np.random.Generator]:
    """The random streams of sample rows ``rows``: row 0 ``default_rng(seed)``, row r ≥ 1 the (r − 1)-th
    child of ``SeedSequence(seed)``, whichever batch a row is generated in. ``seed`` may also be a
    SeedSequence already drawn (several batches of one unseeded call share it)."""
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    # (default_rng(ss.entropy) is default_rng(seed) for an integer seed)
    return [np.random.default_rng(ss.entropy if r == 0 else
                                  np.random.SeedSequence(ss.entropy, spawn_key=(r - 1,), pool_size=ss.pool_size))
            for r in rows]


def sample_batches(model: CharLM, vocab: Vocab, length: int, n: int, *, batch: int = MAX_BATCH, seed: int | None,
                   **options) -> Iterator[tuple[range, Iterator[list[str | None]]]]:
    """``n`` samples in batches of at most ``batch`` rows: (the rows, their steps as ``generate_many``
    yields them) per batch, in order. Each row's characters do not depend on the batching."""
    ss = np.random.SeedSequence(seed)
    for start in range(0, n, batch):
        rows = range(start, min(n, start + batch))
        yield rows, generate_many(model, vocab, length, n, rows=rows, seed=ss, **options)


def generate_many(model: CharLM, vocab: Vocab, length: int, n: int, *, prime: str = "", temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None,
                  seed: int | np.random.SeedSequence | None = None, stop: str | None = None,
                  rows: range | None = None) -> Iterator[list[str | None]]:
    """``n`` samples generated together as one batch (or the rows ``rows`` of them): per step, a list
    of one character per row (None for a row that has already stopped), until every row has
    ``length`` characters or has stopped.

    Each row has its own stream of random numbers (``row_rngs``), so the same seed gives the same
    samples; every row is primed with the same text and ends by itself at ``stop``. One batched
    step of the model per character position, and one vectorised draw for all rows (``BatchSampler``).
    """
    ids = vocab.encode(prime, "prime text") if prime else None
    rows = range(n) if rows is None else rows
    rngs = row_rngs(seed, rows)
    n = len(rows)
    sampler = BatchSampler(rngs, len(vocab), temperature, top_k, top_p, steps=length)
    stepper = model.stepper(n)
    if ids is None or len(ids) == 0:
        ids = np.array([vocab.start_id])
    for i in ids[:-1]:
        stepper.step(np.full(n, i))
    nxt = np.full(n, ids[-1])
    chars = vocab.chars
    tails = [""] * n
    live = np.ones(n, dtype=bool)
    for _ in range(length):
        nxt = sampler(stepper.step(nxt))  # (n,) ids from (n, V) logits
        if not stop:
            yield [chars[i] for i in nxt]
            continue
        out: list[str | None] = [None] * n
        for r in np.flatnonzero(live):
            ch = out[r] = chars[nxt[r]]
            tails[r] = (tails[r] + ch)[-len(stop):]
            if tails[r] == stop:
                live[r] = False
        yield out
        if not live.any():
            return


def sample_pieces(model: CharLM, vocab: Vocab, length: int, *, num_samples: int = 1, prime: str = "",
                  temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  seed: int | None = None, stop: str | None = None) -> Iterator[tuple[int, str]]:
    """What ``lstmgen sample`` prints, as (sample number, text) pieces in printing order: sample 0's
    prime, then its characters one by one as they are generated; every other sample whole (prime
    first) once its batch is done. The checks come first, before any piece: the options, a
    bidirectional model (it cannot generate left to right), a prime with unknown characters."""
    check_options(temperature, top_k, top_p)  # (a top-p of 0 included)
    if length < 0 or num_samples < 1:
        raise ConfigError(f"--length must be ≥ 0 and --num-samples ≥ 1, got {length} and {num_samples}")
    model.stepper(1)  # a model that cannot generate left to right (a cloze model) refuses here
    vocab.encode(prime, "prime text")  # unknown characters: an error naming them, before any output
    return _pieces(model, vocab, length, num_samples, prime, dict(temperature=temperature, top_k=top_k,
                                                                  top_p=top_p, stop=stop), seed)


def _pieces(model, vocab, length, num_samples, prime, options, seed) -> Iterator[tuple[int, str]]:
    yield 0, prime
    if num_samples == 1:
        for ch in generate(model, vocab, length, prime=prime, rng=np.random.default_rng(seed), **options):
            yield 0, ch
        return
    for rows, steps in sample_batches(model, vocab, length, num_samples, prime=prime, seed=seed, **options):
        first = rows.start == 0  # sample 0 streams; the others of a batch follow when it is done
        rest: list[list[str]] = [[] for _ in range(len(rows) - first)]
        for chars in steps:
            if first and chars[0] is not None:
                yield 0, chars[0]
            for buf, ch in zip(rest, chars[first:]):
                if ch is not None:
                    buf.append(ch)
        for r, buf in zip(rows[first:], rest):
            yield r, prime + "".join(buf)
