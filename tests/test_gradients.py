"""Analytic gradients against central differences, float64, distinct sizes B, T, E, H = 2, 3, 4, 5."""

import numpy as np
import pytest
from conftest import numeric_grad

from lstmgen.model import CharLM, ModelConfig
from lstmgen.networks.layers import lookup

B, T, E, H, V, L = 2, 3, 4, 5, 7, 2
# layer 0's input projection is a table lookup for small vocabularies and an embedding GEMM
# for large ones (V > B·T/2): both paths are checked
VOCABS = {"lookup": 3, "gemm": V}


def _setup(cell, dropout=0.0, V=V):
    cfg = ModelConfig(vocab_size=V, cell=cell, layers=L, hidden=H, embed=E, dropout=dropout, dtype="float64")
    model = CharLM(cfg, seed=3)
    rng = np.random.default_rng(11)
    # move every parameter away from its (structured) initial value
    model.flat += rng.normal(0, 0.3, model.flat.shape)
    x = rng.integers(0, V, (B, T))
    y = rng.integers(0, V, (B, T))
    state = [tuple(rng.normal(0, 0.5, a.shape) for a in s) for s in model.zero_state(B)]  # jordan: (h, y) in layer 0
    # a linear function of the final state, so its gradient path is checked too
    w_final = [tuple(rng.normal(0, 1, a.shape) for a in s) for s in state]
    return model, x, y, state, w_final


def _objective(model, x, y, state, w_final, dropout_seed):
    """L = cross-entropy + Σ ⟨w, final state⟩, with dropout masks fixed by the seed."""
    rng = np.random.default_rng(dropout_seed) if model.cfg.dropout else None
    logits_loss, _, new_state, _ = model.loss_and_grads(x, y, state, rng=rng)
    extra = sum(float(np.sum(w * s)) for ws, ss in zip(w_final, new_state) for w, s in zip(ws, ss))
    return logits_loss + extra


@pytest.mark.parametrize("path", list(VOCABS))
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_model_gradients_match_numeric(cell, dropout, path):
    model, x, y, state, w_final = _setup(cell, dropout, VOCABS[path])
    assert lookup(model.cfg.vocab_size, B * T) == (path == "lookup")
    rng = np.random.default_rng(5) if dropout else None
    _, grads, _, dstate0 = model.loss_and_grads(x, y, state, rng=rng, dstate=w_final)

    def f():
        return _objective(model, x, y, state, w_final, 5)

    for name, p in model.params.items():
        num = numeric_grad(f, p)
        np.testing.assert_allclose(grads[name], num, rtol=1e-5, atol=1e-8, err_msg=f"{cell} {name}")
        assert np.abs(num).max() > 0, f"{name} has no gradient at all: the check would be vacuous"
    for k, layer_state in enumerate(state):
        for j, s in enumerate(layer_state):
            num = numeric_grad(f, s)
            np.testing.assert_allclose(dstate0[k][j], num, rtol=1e-5, atol=1e-8,
                                       err_msg=f"{cell} initial state layer {k} part {j}")
