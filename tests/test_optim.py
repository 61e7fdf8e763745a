"""The optimizers, clipping and the learning-rate schedules (``lstmgen.optim``); agreement of every
optimizer with torch.optim is in test_torch_agreement."""

import math

import numpy as np
import pytest

from lstmgen.errors import ConfigError
from lstmgen.model import CharLM, ModelConfig
from lstmgen.optim import OPTIMIZERS, Optimizer, clip_grad_norm_, lr_at


def test_schedules_are_pure_functions_of_the_step():
    assert lr_at(0, 1.0) == lr_at(999, 1.0) == 1.0
    cos = [lr_at(s, 1.0, "cosine", total_steps=110, warmup=10) for s in range(120)]
    assert cos[0] == pytest.approx(0.1) and cos[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(cos[10:], cos[11:]))
    assert cos[110] == pytest.approx(0.1) and cos[119] == pytest.approx(0.1)
    assert lr_at(2500, 1.0, "step", step_size=1000, gamma=0.5) == 0.25


def test_cosine_follows_whichever_budget_is_further_along():
    """``progress`` (the time budget's) and the step budget: the decay follows the larger."""
    assert lr_at(50, 1.0, "cosine", total_steps=1000, progress=0.5) == pytest.approx(0.55)
    assert lr_at(50, 1.0, "cosine", total_steps=100, progress=0.1) == pytest.approx(0.55)
    assert lr_at(50, 1.0, "cosine", progress=1.0) == pytest.approx(0.1)
    assert lr_at(5, 1.0, "cosine", warmup=10, progress=0.9) == pytest.approx(0.6)  # warm-up first
    assert lr_at(50, 1.0, "constant", progress=0.9) == 1.0


def test_weight_decay_applies_to_matrices_only():
    from lstmgen.training import TrainOptions, make_optimizer

    m = CharLM(ModelConfig(vocab_size=9, cell="peephole", layers=2, hidden=6, embed=5), seed=4)
    opt = make_optimizer(TrainOptions(weight_decay=0.1), m)
    off = 0
    for name, p in m.params.items():
        own = any(f".{extra}_l" in name for extra in m.network.spec.extra)  # the peepholes: per-unit vectors
        want = 1.0 if p.ndim == 2 and not own else 0.0
        assert np.all(opt.decay_mask[off : off + p.size] == want), name
        off += p.size
    assert off == m.flat.size



def test_adam_first_step_moves_every_entry_by_lr_against_its_gradient_sign():
    """Adam's first step is lr · g / (|g| + ε) after bias correction: ±lr wherever g ≠ 0."""
    g = np.array([3.0, -0.5, 1e-3, 0.0])
    p = np.zeros(4)
    Optimizer("adam", 4, np.float64).step(p, g, 0.01)
    np.testing.assert_allclose(p, -0.01 * g / (np.abs(g) + 1e-8), rtol=1e-12, atol=0)
    assert np.abs(p[:2]).tolist() == pytest.approx([0.01, 0.01])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_round_trips_and_a_wrong_shape_is_refused(name):
    a, b = Optimizer(name, 5, np.float64), Optimizer(name, 5, np.float64)
    rng = np.random.default_rng(0)
    pa = rng.normal(size=5)
    for _ in range(3):
        a.step(pa, rng.normal(size=5), 0.1)
    b.load_state(a.state)
    pb, g = pa.copy(), rng.normal(size=5)
    a.step(pa, g, 0.1)
    b.step(pb, g, 0.1)
    np.testing.assert_array_equal(pa, pb)
    with pytest.raises(ConfigError):
        Optimizer(name, 6, np.float64).load_state(a.state)


def test_clipping_scales_to_the_limit_and_returns_the_norm_before():
    g = np.array([3.0, 4.0])
    assert clip_grad_norm_(g, 1.0) == pytest.approx(5.0)
    assert math.hypot(*g) == pytest.approx(1.0, rel=1e-5)
    g = np.array([0.3, 0.4])
    assert clip_grad_norm_(g, 1.0) == pytest.approx(0.5) and g.tolist() == [0.3, 0.4]  # under the limit: untouched
    g = np.array([30.0, 40.0])
    assert clip_grad_norm_(g, 0.0) == pytest.approx(50.0) and g.tolist() == [30.0, 40.0]  # 0: off
