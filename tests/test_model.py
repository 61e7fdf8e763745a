"""Behaviour of the language model: chunking, initial loss, learning, one-step API, tracing."""

import math

import numpy as np
import pytest
from conftest import naive_trace

from lstmgen.model import CharLM, ModelConfig
from lstmgen.optim import Optimizer, clip_grad_norm_


def _model(cell, dtype="float64", **kw):
    cfg = ModelConfig(vocab_size=kw.pop("V", 9), cell=cell, layers=kw.pop("L", 2), hidden=kw.pop("H", 6),
                      embed=kw.pop("E", 5), dtype=dtype, **kw)
    return CharLM(cfg, seed=4)


def test_chunked_equals_whole(cell):
    """T steps in chunks with carried state = one pass: logits, final state, loss and gradients."""
    m = _model(cell)
    rng = np.random.default_rng(0)
    B, T = 3, 12
    x = rng.integers(0, 9, (B, T))
    y = rng.integers(0, 9, (B, T))
    whole_logits, whole_state = m.network.logits(m.params, x, m.zero_state(B))
    state, parts, states_in = m.zero_state(B), [], []
    for s in range(0, T, 5):  # chunks 5, 5, 2
        states_in.append(state)
        lg, state = m.network.logits(m.params, x[:, s : s + 5], state)
        parts.append(lg)
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole_logits, rtol=1e-12, atol=1e-12)
    for a, b in zip(state, whole_state):
        for u, v in zip(a, b):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)

    # the whole loss is the chunk losses weighted by their lengths
    loss_w, *_ = m.loss_and_grads(x, y, m.zero_state(B))
    loss_c = sum(m.loss_and_grads(x[:, s : s + 5], y[:, s : s + 5], st)[0] * x[:, s : s + 5].shape[1] / T
                 for s, st in zip(range(0, T, 5), states_in))
    assert loss_c == pytest.approx(loss_w, rel=1e-12)


def test_chunked_gradients_equal_whole(cell):
    """Σ over chunks of weighted gradients, chained through dL/dstate, equals the whole pass."""
    m = _model(cell)
    rng = np.random.default_rng(1)
    B, T, C = 2, 10, 4
    x = rng.integers(0, 9, (B, T))
    y = rng.integers(0, 9, (B, T))
    _, grads_w, _, _ = m.loss_and_grads(x, y, m.zero_state(B))
    flat_w = np.concatenate([grads_w[k].ravel() for k in m.params])

    starts = list(range(0, T, C))
    states, state = [], m.zero_state(B)
    for s in starts:
        states.append(state)
        _, state = m.network.logits(m.params, x[:, s : s + C], state)
    total = {k: np.zeros_like(v) for k, v in m.params.items()}
    dstate = None  # gradient of the *whole* objective w.r.t. this chunk's final state
    for s, st in reversed(list(zip(starts, states))):
        n = x[:, s : s + C].shape[1]
        w = n / T  # whole loss = Σ_chunks w · chunk loss
        # scale dstate into the chunk's own units (its loss is weighted by w in the whole objective)
        ds = None if dstate is None else [tuple(d / w for d in part) for part in dstate]
        _, grads, _, d0 = m.loss_and_grads(x[:, s : s + C], y[:, s : s + C], st, dstate=ds)
        for k in total:
            total[k] += w * grads[k]
        dstate = [tuple(w * d for d in part) for part in d0]
    flat_c = np.concatenate([total[k].ravel() for k in m.params])
    np.testing.assert_allclose(flat_c, flat_w, rtol=1e-9, atol=1e-13)


def test_loss_at_initialisation_is_near_ln_v(cell):
    m = _model(cell, dtype="float32", V=65, H=64, E=32)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 65, (8, 32))
    y = rng.integers(0, 65, (8, 32))
    loss, _, _, _ = m.loss_and_grads(x, y, m.zero_state(8))
    assert abs(loss - math.log(65)) < 0.15


def test_tiny_model_overfits_a_short_string(cell):
    text = "hello lstmgen! "
    vocab = sorted(set(text))
    ids = np.array([vocab.index(c) for c in text * 4])
    # (one Jordan layer remembers only its previous output distribution, which cannot tell "hel|l"
    # from "hell|o" apart: it plateaus near 0.17 nats; an Elman layer above it has its own memory)
    m = _model(cell, dtype="float32", V=len(vocab), H=32, E=16, L=2 if cell == "jordan" else 1)
    opt = Optimizer("adam", m.flat.size, np.float32)
    x, y = ids[None, :-1], ids[None, 1:]
    flat_g, grads = m.new_grads()
    for _ in range(300):
        loss, _, _, _ = m.loss_and_grads(x, y, m.zero_state(1), grads=grads)
        clip_grad_norm_(flat_g, 5.0)
        opt.step(m.flat, flat_g, 0.02)
    assert loss < 0.05, f"{cell}: loss {loss}"


def test_float32_and_float64_agree(cell):
    m64 = _model(cell, H=16, E=8)
    m32 = CharLM(ModelConfig(**{**m64.cfg.to_dict(), "dtype": "float32"}), params=m64.params)
    assert m32.flat.dtype == np.float32
    rng = np.random.default_rng(2)
    x = rng.integers(0, 9, (4, 20))
    y = rng.integers(0, 9, (4, 20))
    l64, g64, _, _ = m64.loss_and_grads(x, y, m64.zero_state(4))
    l32, g32, _, _ = m32.loss_and_grads(x, y, m32.zero_state(4))
    assert l32 == pytest.approx(l64, rel=1e-5)
    for k in g64:
        assert g32[k].dtype == np.float32
        np.testing.assert_allclose(g32[k], g64[k], rtol=2e-3, atol=2e-5, err_msg=k)


def test_stepper_equals_whole_sequence(cell):
    m = _model(cell)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 9, (2, 8))
    whole, _ = m.network.logits(m.params, x, m.zero_state(2))
    st = m.stepper(batch=2)
    for t in range(8):
        np.testing.assert_allclose(st.step(x[:, t]), whole[:, t], rtol=1e-12, atol=1e-12)


def test_trace_equals_naive_recomputation(cell):
    m = _model(cell)
    ids = np.random.default_rng(4).integers(0, 9, 10)
    t = m.trace(ids)
    traced, probs = t.layers, t.probs
    naive, naive_probs = naive_trace(m.params, m.cfg.cell, m.cfg.layers, ids)
    assert [set(layer) for layer in traced] == [set(layer) for layer in naive]
    for k in range(m.cfg.layers):
        for q, v in naive[k].items():
            assert traced[k][q].shape == (10, m.cfg.hidden)
            np.testing.assert_allclose(traced[k][q], v, rtol=1e-10, atol=1e-12, err_msg=f"layer {k} {q}")
    np.testing.assert_allclose(probs, naive_probs, rtol=1e-10, atol=1e-12)


def test_dropout_is_inverted_and_off_at_evaluation():
    m = _model("lstm", dropout=0.5)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 9, (2, 6))
    a, _ = m.network.logits(m.params, x, m.zero_state(2))
    b, _ = m.network.logits(m.params, x, m.zero_state(2))
    np.testing.assert_array_equal(a, b)  # no dropout without an rng
    l1, *_ = m.loss_and_grads(x, x, m.zero_state(2), rng=np.random.default_rng(1))
    l2, *_ = m.loss_and_grads(x, x, m.zero_state(2), rng=np.random.default_rng(2))
    assert l1 != l2


def test_sum_loss_matches_mean_loss():
    m = _model("gru")
    rng = np.random.default_rng(5)
    x = rng.integers(0, 9, (2, 7))
    y = rng.integers(0, 9, (2, 7))
    s, _ = m.network.sum_loss(m.params, x, y, m.zero_state(2))
    mean, *_ = m.loss_and_grads(x, y, m.zero_state(2))
    assert s / 14 == pytest.approx(mean, rel=1e-12)


@pytest.mark.parametrize("spread", [1.0, 200.0])
@pytest.mark.parametrize("V, N", [(50, 40), (2000, 600)])
def test_softmax_xent_matches_log_space_reference(spread, V, N, monkeypatch):
    """Moderate logits skip the max shift, extreme ones take it; large arrays are split into
    column spans on two threads: all exact, gradient included."""
    from lstmgen import threads
    from lstmgen.networks.losses import softmax_xent_

    monkeypatch.setattr(threads, "_workers", 2)
    monkeypatch.setattr(threads, "_pool", None)
    assert len(threads.column_spans(N, 2**19 // V)) == (2 if V == 2000 else 1)
    rng = np.random.default_rng(0)
    logits = rng.normal(0, spread, (V, N))
    targets = rng.integers(0, V, N)
    lse = np.log(np.exp(logits - logits.max(0)).sum(0)) + logits.max(0)
    want_loss = float(np.mean(lse - logits[targets, np.arange(N)]))
    want_grad = np.exp(logits - lse)
    want_grad[targets, np.arange(N)] -= 1.0
    got = logits.copy()
    assert softmax_xent_(got, targets) == pytest.approx(want_loss, rel=1e-12)
    np.testing.assert_allclose(got, want_grad / N, rtol=1e-9, atol=1e-15)
