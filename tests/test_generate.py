"""The sampler draws from the distribution it claims to, and generation is deterministic per seed."""

import numpy as np
import pytest

from lstmgen.errors import ConfigError
from lstmgen.generate import BatchSampler, Sampler, generate, generate_many
from lstmgen.text import Vocab

Z = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])


def _freqs(sampler, n=40000):
    counts = np.bincount([sampler(Z) for _ in range(n)], minlength=Z.size)
    return counts / n


def _softmax(z):
    p = np.exp(z - z.max())
    return p / p.sum()


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_draws_follow_softmax_with_temperature(temperature):
    f = _freqs(Sampler(np.random.default_rng(0), Z.size, temperature))
    np.testing.assert_allclose(f, _softmax(Z / temperature), atol=0.01)


def test_top_k_renormalises_over_the_k_likeliest():
    f = _freqs(Sampler(np.random.default_rng(1), Z.size, 1.0, top_k=2))
    want = np.zeros_like(Z)
    want[:2] = _softmax(Z[:2])
    np.testing.assert_allclose(f, want, atol=0.01)


def test_top_p_keeps_the_smallest_set_reaching_p():
    p = _softmax(Z)  # ≈ [.56, .21, .13, .08, .03, .004]
    f = _freqs(Sampler(np.random.default_rng(2), Z.size, 1.0, top_p=0.8))
    want = np.zeros_like(Z)
    want[:3] = p[:3] / p[:3].sum()  # .56 + .21 < .8 ≤ .56 + .21 + .13
    np.testing.assert_allclose(f, want, atol=0.01)


def test_greedy_and_determinism():
    assert Sampler(np.random.default_rng(0), Z.size, 0.0)(Z) == 0
    s1, s2 = Sampler(np.random.default_rng(5), Z.size), Sampler(np.random.default_rng(5), Z.size)
    assert [s1(Z) for _ in range(3000)] == [s2(Z) for _ in range(3000)]  # across noise blocks


@pytest.mark.parametrize("kw", [{"temperature": -1}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5}])
def test_nonsense_options_are_refused(kw):
    with pytest.raises(ConfigError):
        Sampler(np.random.default_rng(0), Z.size, **{"temperature": 1.0, **kw})


@pytest.mark.parametrize("tries", [0, 1, 1000])  # explicit kept set, mixed, (almost) pure rejection
@pytest.mark.parametrize("kw", [{"top_k": 2}, {"top_p": 0.8}, {"top_k": 2, "top_p": 0.7}, {"top_k": 3, "top_p": 0.99}])
def test_rejection_and_explicit_filters_draw_the_same_distribution(tries, kw):
    s = Sampler(np.random.default_rng(7), Z.size, 1.0, **kw)
    s.tries = tries
    p = _softmax(Z)
    keep = np.zeros(Z.size, bool)
    k = kw.get("top_k", Z.size)
    above = np.concatenate([[0], np.cumsum(p)[:-1]])
    keep[: min(k, int(np.count_nonzero(above < kw.get("top_p", 1.0))))] = True
    want = np.where(keep, p, 0) / p[keep].sum()
    np.testing.assert_allclose(_freqs(s), want, atol=0.01)


def test_flat_distribution_with_a_small_k_stays_exact():
    z = np.zeros(500)
    z[:3] = 0.5  # three slightly likelier characters among 500: rejection almost never accepts
    s = Sampler(np.random.default_rng(3), z.size, 1.0, top_k=3)
    draws = np.array([s(z) for _ in range(3000)])
    assert set(draws) <= {0, 1, 2} and min(np.bincount(draws, minlength=3)) > 900


# ---------------------------------------------------------------------- many samples as one batch


def _batch_freqs(kw, rows=64, steps=700, temperature=1.0):
    rngs = [np.random.default_rng(100 + r) for r in range(rows)]
    s = BatchSampler(rngs, Z.size, temperature, **kw)
    logits = np.tile(Z, (rows, 1))
    draws = np.concatenate([s(logits) for _ in range(steps)])
    return np.bincount(draws, minlength=Z.size) / draws.size


FILTERS = [{}, {"top_k": 2}, {"top_p": 0.8}, {"top_k": 2, "top_p": 0.7}, {"top_k": 3, "top_p": 0.99}]


@pytest.mark.parametrize("kw", FILTERS)
def test_batch_sampler_draws_the_same_distributions(kw):
    p = _softmax(Z)
    keep = np.zeros(Z.size, bool)
    above = np.concatenate([[0], np.cumsum(p)[:-1]])
    keep[: min(kw.get("top_k", Z.size), int(np.count_nonzero(above < kw.get("top_p", 1.0))))] = True
    want = np.where(keep, p, 0) / p[keep].sum()
    np.testing.assert_allclose(_batch_freqs(kw), want, atol=0.01)


def test_batch_sampler_rows_use_their_own_streams():
    """Row r of a batch draws what a batch-1 sampler on row r's generator draws (same noise)."""
    logits = np.random.default_rng(0).standard_normal((5, Z.size))
    many = BatchSampler([np.random.default_rng(r) for r in range(5)], Z.size, 0.7)
    ones = [BatchSampler([np.random.default_rng(r)], Z.size, 0.7) for r in range(5)]
    for _ in range(50):
        got = many(logits)
        assert got.tolist() == [int(s(logits[r : r + 1])[0]) for r, s in enumerate(ones)]


def _model():
    from lstmgen.model import CharLM, ModelConfig

    return CharLM(ModelConfig(vocab_size=len(VOCAB), hidden=24, embed=8, layers=2, dtype="float64"), seed=3)


VOCAB = Vocab("ab .\n")


def test_generate_many_is_deterministic_stops_each_row_and_greedy_rows_agree_with_batch_1():
    m = _model()
    a = list(generate_many(m, VOCAB, 40, 6, prime="a", seed=4, stop="."))
    b = list(generate_many(m, VOCAB, 40, 6, prime="a", seed=4, stop="."))
    assert a == b
    for r in range(6):
        row = "".join(step[r] for step in a if step[r] is not None)
        assert len(row) == 40 or row.endswith(".") and row.count(".") == 1
    greedy = list(generate_many(m, VOCAB, 30, 4, prime="ab", temperature=0.0))
    one = "".join(generate(m, VOCAB, 30, prime="ab", temperature=0.0, rng=np.random.default_rng(0)))
    for r in range(4):
        assert "".join(step[r] for step in greedy) == one
