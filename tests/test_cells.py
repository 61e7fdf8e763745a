"""The cells (``lstmgen.cells``): each one's table is consistent, its one-step update (the stepper's)
is its sequence forward over one step, its backward matches central differences, and its
initialisation and derived gates are as documented."""

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import numeric_grad

from lstmgen.cells import CELLS
from lstmgen.model import CharLM, ModelConfig

B, T, H = 2, 3, 5


def _model(cell, dtype="float64", H=6):
    return CharLM(ModelConfig(vocab_size=9, cell=cell, layers=2, hidden=H, embed=5, dtype=dtype), seed=4)


def _rec(spec, rng) -> dict:
    """Random recurrent parameters of the shapes the cell reads (``CellSpec.recurrent``)."""
    G = spec.gates * H
    shapes = {"weight_hh": (G, H), "bias_hh": (G,)} | {name: (len(rows), H) for name, rows in spec.extra.items()}
    return {key: rng.normal(0, 0.5, shapes[name]) for key, name in spec.recurrent.items()}


@pytest.mark.parametrize("cell", list(CELLS))
def test_the_table_is_consistent(cell):
    spec = CELLS[cell]
    assert spec.name == cell and len(spec.gate_blocks) == spec.gates
    assert set(spec.states) <= set(spec.quantities) and spec.quantities[-1] == "h"
    assert spec.keep_gate is None or spec.keep_gate in spec.quantities
    rng = np.random.default_rng(0)
    xp = rng.normal(0, 1, (T, spec.gates * H, B))
    state = tuple(rng.normal(0, 0.5, (H, B)) for _ in spec.states)
    hbuf, final, cache = spec.forward(xp, state, _rec(spec, rng))
    traced = spec.trace(cache)
    assert list(traced) == list(spec.quantities)  # what inspect shows, in the table's order
    assert all(v.shape == (T, H, B) for v in traced.values())
    np.testing.assert_array_equal(traced["h"][-1], final[0])
    assert set(spec.sigmoid) <= set(spec.quantities)  # what inspect measures saturation on
    for q, v in traced.items():
        lo, hi = (0.0, 1.0) if q in spec.sigmoid else (-1.0, 1.0)
        assert q == "c" or (lo <= v.min() and v.max() <= hi), q


@pytest.mark.parametrize("cell", list(CELLS))
def test_one_step_is_the_sequence_forward_over_one_step(cell):
    """``CellSpec.step`` (what the stepper runs) against ``forward`` with T = 1, from a random state."""
    spec = CELLS[cell]
    rng = np.random.default_rng(1)
    G = spec.gates * H
    rec = _rec(spec, rng)
    xp = rng.normal(0, 1, (1, G, B))
    state = tuple(rng.normal(0, 0.5, (H, B)) for _ in spec.states)
    _, want, _ = spec.forward(xp.copy(), state, rec)  # (the forward consumes its xp)
    h, c = state[0].copy(), (state[1] if len(state) > 1 else np.zeros((H, B))).copy()
    wh = rec["w_hh"] @ h
    a, ah = (xp[0] + wh, None) if spec.fused_step else (xp[0].copy(), wh)
    scratch = SimpleNamespace(tmp=np.empty((H, B)), tc=np.empty((H, B)), hn=np.empty((H, B)), gates=np.empty((G, B)))
    spec.step(a, ah, h, c, rec, scratch)
    np.testing.assert_allclose(h, want[0], rtol=1e-13, atol=1e-14)
    if len(want) > 1:
        np.testing.assert_allclose(c, want[1], rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("cell", list(CELLS))  # (jordan is a network, not a cell: test_jordan)
def test_cell_input_gradient_matches_numeric(cell):
    """The cell alone: d(Σ w ⊙ h_t)/d(xp) for the input projections, and for its recurrent parameters."""
    spec = CELLS[cell]
    rng = np.random.default_rng(2)
    G = spec.gates * H
    xp = rng.normal(0, 1, (T, G, B))  # time-major, as the forward reads it
    state = tuple(rng.normal(0, 0.5, (H, B)) for _ in range(spec.n_states))
    rec = _rec(spec, rng)
    w = rng.normal(0, 1, (H, T, B))

    def f():
        hbuf, _, _ = spec.forward(xp.copy(), state, rec)  # (the forward consumes its xp)
        return float(np.sum(w * hbuf[:, 1:]))

    hbuf, _, cache = spec.forward(xp.copy(), state, rec)
    np.testing.assert_array_equal(hbuf[:, 0], state[0])
    zeros = tuple(np.zeros((H, B)) for _ in range(spec.n_states))
    dxp_flat, _, drec = spec.backward(w, zeros, cache)  # dxp (G·H, T·B): feature-major, for the GEMMs
    want = numeric_grad(f, xp).transpose(1, 0, 2)  # (G, T, B)
    np.testing.assert_allclose(dxp_flat.reshape(G, T, B), want, rtol=1e-6, atol=1e-9)
    for name, p in rec.items():
        got, want = drec[name], numeric_grad(f, p)
        if name == "b_hh":  # the cell uses only the blocks it keeps (GRU: b_hn); the stack folds the rest into xp
            kept = spec.bias_kept * H
            got, want = got[-kept:], want[-kept:]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9, err_msg=name)


def test_peephole_weights_get_gradients():
    m = _model("peephole")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 9, (B, T)), rng.integers(0, 9, (B, T))
    _, grads, _, _ = m.loss_and_grads(x, y, m.zero_state(B))
    for k in range(2):
        assert np.all(np.abs(grads[f"rnn.weight_peep_l{k}"]) > 0)


def test_cifg_forget_is_one_minus_input():
    m = _model("cifg")
    traced = m.trace(np.arange(9)).layers
    for layer in traced:
        assert np.array_equal(layer["f"], 1.0 - layer["i"])


def test_forget_bias_initialised_to_one():
    m = _model("lstm", dtype="float32", H=6)
    b = m.params["rnn.bias_ih_l0"] + m.params["rnn.bias_hh_l0"]
    np.testing.assert_allclose(b[6:12], 1.0)


@pytest.mark.parametrize("cell", list(CELLS))
def test_the_bias_initialisation_is_the_tables(cell):
    """PyTorch's uniform initialisation, then the cell's own (``init_bias``) on every layer and stack."""
    spec = CELLS[cell]
    for direction in ("fwd", "bi"):
        m = CharLM(ModelConfig(vocab_size=9, cell=cell, layers=2, hidden=6, embed=5, direction=direction), seed=4)
        want = {}
        for sfx in m.network.stacks:
            for k in range(2):
                b_ih = m.params[f"rnn.bias_ih_l{k}{sfx}"].copy()
                b_hh = m.params[f"rnn.bias_hh_l{k}{sfx}"].copy()
                if spec.init_bias is not None:
                    before_ih, before_hh = b_ih.copy(), b_hh.copy()
                    spec.init_bias(before_ih, before_hh, 6)  # idempotent: applying it again changes nothing
                    np.testing.assert_array_equal(before_ih, b_ih)
                    np.testing.assert_array_equal(before_hh, b_hh)
                want[k] = np.abs(b_ih).max() <= 1.0  # U(−1/√H, 1/√H), or the init's constants
        assert all(want.values())
    extra_names = set(spec.extra)
    assert extra_names <= set(spec.recurrent.values())  # a cell's own parameters are ones it reads
    assert spec.bias_kept < spec.gates


def test_cifg_input_bias_starts_f_where_the_lstm_starts_it():
    m = _model("cifg", dtype="float32", H=6)
    b = m.params["rnn.bias_ih_l0"] + m.params["rnn.bias_hh_l0"]
    np.testing.assert_allclose(b[:6], -1.0)  # f = 1 − σ(−1) = σ(1)
