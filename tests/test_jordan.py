"""The Jordan network (``lstmgen.networks.jordan``): layer 0 reads the model's own previous output.

Its gradients (with the feedback), chunked-equals-whole, the stepper and the trace are checked with
every other kind in test_gradients, test_model and test_inspect; here, what is Jordan's own."""

import numpy as np
import pytest
from conftest import invoke

from lstmgen.errors import ConfigError
from lstmgen.model import CharLM, ModelConfig
from lstmgen.networks import Jordan
from lstmgen.networks.losses import softmax

V, H, E, L = 7, 5, 4, 2


def _model(seed=0) -> CharLM:
    m = CharLM(ModelConfig(vocab_size=V, cell="jordan", layers=L, hidden=H, embed=E, dtype="float64"), seed=seed)
    m.flat += np.random.default_rng(seed).normal(0, 0.5, m.flat.shape)
    return m


def test_it_is_its_own_network_of_elman_layers():
    m = _model()
    assert isinstance(m.network, Jordan) and m.network.spec.name == "rnn"
    assert {"rnn.weight_yh_l0", "rnn.bias_yh_l0"} <= set(m.params) and "rnn.weight_hh_l0" not in m.params
    assert m.params["rnn.weight_yh_l0"].shape == (H, V)
    assert m.network.state_layout() == [(("h", H), ("y", V)), (("h", H),)]


def test_the_carried_output_is_the_last_guess():
    """The state's y after a chunk is the distribution the model gave after its last character."""
    m = _model()
    x = np.random.default_rng(1).integers(0, V, (3, 6))
    logits, state, _ = m.network.forward(m.params, x, m.zero_state(3), None)
    last = logits.reshape(V, 6, 3)[:, -1]  # (V, B)
    np.testing.assert_allclose(state[0][1], softmax(last), rtol=1e-12)


def test_layer0_reads_the_previous_output():
    """W_yh changes every guess but the first (y starts at zero), and nothing else does that."""
    m = _model()
    x = np.random.default_rng(2).integers(0, V, (2, 5))
    before, _ = m.network.logits(m.params, x, m.zero_state(2))
    m.params["rnn.weight_yh_l0"] += 0.5
    after, _ = m.network.logits(m.params, x, m.zero_state(2))
    np.testing.assert_array_equal(before[:, 0], after[:, 0])
    assert np.all(np.abs(before[:, 1:] - after[:, 1:]).max(axis=-1) > 1e-6)


def test_the_stepper_feeds_its_output_back():
    m = _model()
    ids = np.random.default_rng(3).integers(0, V, 8)
    whole, _ = m.network.logits(m.params, ids[None, :], m.zero_state(1))
    st = m.stepper(1)
    for t, c in enumerate(ids):
        np.testing.assert_allclose(st.step(int(c))[0], whole[0, t], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(st.state[0][1][:, 0], softmax(whole[0, -1][:, None])[:, 0], rtol=1e-12)


def test_jordan_cannot_be_bidirectional():
    with pytest.raises(ConfigError, match="Jordan"):
        CharLM(ModelConfig(vocab_size=5, cell="jordan", direction="bi"))  # the network kind refuses it
    r = invoke("train", "--cell", "jordan", "--direction", "bi")
    assert r.exit_code == 2 and "Jordan network reads its own previous output" in r.stderr


def test_inspect_explains_layer_0(tmp_path):
    from lstmgen import checkpoint as ckpt_io

    m = _model()
    vocab = "abcdefg"
    meta = {"vocab": vocab, "model": {"cell": "jordan", "layers": L, "hidden": H, "embed": E, "dropout": 0.0,
                                      "dtype": "float64"}, "train": {"step": 1}}
    ckpt_io.save(tmp_path / "j.npz", ckpt_io.Checkpoint(params=m.params, meta=meta))
    r = invoke("inspect", tmp_path / "j.npz", "--text", "abcabcgfed", env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "layer 0 reads no state of its own" in r.stdout
