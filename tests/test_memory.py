"""lstmgen memory: the influence of each character on each prediction, from the model's own backward
pass, equals central differences and a one-pair-at-a-time backward pass for every network kind;
hand-built networks give the known answers (an RNN decays as a^d, an LSTM that never forgets stays
flat); the command prints and writes it."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import lstmgen.networks.jordan as jordan_mod
import lstmgen.networks.layers as layers_mod
from lstmgen import checkpoint as ckpt_io
from lstmgen.cli import app
from lstmgen.memory import influence, span
from lstmgen.model import CharLM, ModelConfig
from lstmgen.networks.losses import softmax

runner = CliRunner()
KINDS = [(c, "fwd") for c in ("lstm", "gru", "rnn", "peephole", "cifg", "jordan")] + \
        [(c, "bi") for c in ("lstm", "gru", "rnn", "peephole", "cifg")]


def ln_p(model: CharLM, ids: np.ndarray, t: int) -> float:
    """ln p of the character predicted at t: x_{t+1} after x_≤t, or (bidirectional) x_t from both sides."""
    if model.cfg.direction == "bi":
        return float(np.log(model.trace(ids).probs[t, ids[t]]))
    return float(np.log(model.trace(ids).probs[t, ids[t + 1]]))


def numeric(model: CharLM, ids: np.ndarray, t: int, s: int, eps: float = 1e-6) -> float:
    """‖∂ ln p / ∂ e_s‖ by central differences: position s's embedded character moved, nothing else."""
    real = layers_mod.layer0_input
    users = (layers_mod, jordan_mod)  # the modules that call it

    def moved(delta):
        def layer0_input(params, x, bias, sfx=""):
            xp, inp = real(params, x, bias, sfx)
            pos = s if sfx == "" else x.shape[0] - 1 - s  # the backward stack reads the text reversed
            xp = xp.copy()
            xp[pos] += (params[f"rnn.weight_ih_l0{sfx}"] @ delta)[:, None]  # W_ih (e_s + δ) + b (xp time-major)
            return xp, inp
        return layer0_input

    g = np.zeros(model.cfg.embed)
    for i in range(len(g)):
        sides = []
        for sign in (1.0, -1.0):
            delta = np.zeros(len(g))
            delta[i] = sign * eps
            for mod in users:
                mod.layer0_input = moved(delta)
            try:
                sides.append(ln_p(model, ids, t))
            finally:
                for mod in users:
                    mod.layer0_input = real
        g[i] = (sides[0] - sides[1]) / (2 * eps)
    return float(np.linalg.norm(g))


@pytest.mark.parametrize("cell, direction", KINDS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("V", [7, 200])  # layer 0 by table lookup / by GEMM of the embedded characters
def test_the_influence_equals_central_differences(cell, direction, layers, V):
    model = CharLM(ModelConfig(vocab_size=V, cell=cell, layers=layers, hidden=5, embed=3, dtype="float64",
                               direction=direction), seed=2)
    ids = np.random.default_rng(layers + V).integers(0, V, 11)
    found = influence(model, ids, max_distance=4)  # windows shorter than the text: the carried state matters
    for t in (2, 6, 9):
        for d in range(5):
            for side, s in (("left", t - d), ("right", t + d)):
                m = found.left if side == "left" else found.right
                if m is None or not 0 <= s < len(ids) or (direction == "bi" and d == 0):
                    continue
                want = numeric(model, ids, t, s)
                assert m[t, d] == pytest.approx(want, rel=1e-5, abs=1e-9), (side, t, d)
    if direction == "bi":
        assert np.all(found.left[:, 0] == 0) and np.all(found.right[:, 0] == 0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "peephole", "cifg", "jordan"])
def test_the_windows_equal_one_backward_pass_per_prediction(cell):
    """Each target alone: the whole prefix from a zero state, one backward pass, no window."""
    model = CharLM(ModelConfig(vocab_size=9, cell=cell, layers=2, hidden=6, embed=4, dtype="float64"), seed=3)
    ids = np.random.default_rng(5).integers(0, 9, 40)
    D = 7
    found = influence(model, ids, max_distance=D)
    _, grads = model.new_grads()
    for t in range(len(ids) - 1):
        logits, _, cache = model.network.forward(model.params, ids[None, : t + 1], model.zero_state(1))
        dlogits = np.zeros_like(logits)
        dlogits[:, t] = softmax(logits[:, t : t + 1])[:, 0]
        dlogits[ids[t + 1], t] -= 1
        d_input = []
        model.network.backward(model.params, dlogits, cache, grads, d_input=d_input)
        g = model.params["rnn.weight_ih_l0"].T @ d_input[0]  # (E, t+1)
        norms = np.linalg.norm(g, axis=0)[::-1][: D + 1]  # d = 0, 1, …
        np.testing.assert_allclose(found.left[t, : len(norms)], norms, rtol=1e-9, atol=1e-15)
        assert np.all(np.isnan(found.left[t, len(norms):]))


def test_a_linear_rnn_decays_as_a_to_the_d():
    a = 0.7
    model = CharLM(ModelConfig(vocab_size=5, cell="rnn", layers=1, hidden=4, embed=3, dtype="float64"), seed=1)
    p = model.params
    p["rnn.weight_hh_l0"][...] = a * np.eye(4)
    p["rnn.weight_ih_l0"][...] *= 1e-4  # tiny inputs: tanh stays in its linear part
    p["rnn.bias_ih_l0"][...] = p["rnn.bias_hh_l0"][...] = 0
    ids = np.random.default_rng(0).integers(0, 5, 300)
    curve = influence(model, ids, max_distance=12).curve()
    np.testing.assert_allclose(curve[1:] / curve[:-1], a, rtol=1e-3)
    assert span(curve, 0) == 13 or span(curve, 0) is None  # 0.7^13 ≈ 0.0097: just past the 12 measured


def test_an_lstm_that_never_forgets_keeps_an_open_path():
    """Forget gate held at 1 and no recurrent weights: c_t = c_{t−1} + i_t g_t, so every earlier
    character reaches the prediction through the cell state by the same path: flat in d ≥ 1."""
    H = 4
    model = CharLM(ModelConfig(vocab_size=3, cell="lstm", layers=1, hidden=H, embed=3, dtype="float64"), seed=4)
    p = model.params
    p["rnn.weight_hh_l0"][...] = 0
    p["rnn.weight_ih_l0"][...] *= 1e-3
    p["rnn.bias_hh_l0"][...] = 0
    p["rnn.bias_ih_l0"][...] = 0
    p["rnn.bias_ih_l0"][H : 2 * H] = 40.0  # f = σ(40) = 1 to float64's precision
    ids = np.zeros(200, dtype=np.int64)  # one character over and over: every step alike
    curve = influence(model, ids, max_distance=30).curve()
    np.testing.assert_allclose(curve[2:], curve[1], rtol=1e-3)
    assert span(curve, 0) is None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("memory")
    corpus = d / "c.txt"
    corpus.write_text("expr: (a (b c))\n\"Yes,\" she said.\nline: one two\n" * 40, encoding="utf-8")
    out = {}
    for name, opts in (("rnn", ["--cell", "rnn"]), ("bi", ["--direction", "bi"])):
        r = runner.invoke(app, ["train", str(corpus), "--out", str(d / name), "--hidden", "8", "--embed", "4",
                                "--batch-size", "4", "--seq-len", "16", "--max-steps", "3", "--workers", "1",
                                "--dtype", "float64", *opts])
        assert r.exit_code == 0, r.output
        out[name] = d / name
    return out


def test_the_command_prints_json_as_the_contract_says(runs):
    text = "expr: (a (b c))\n\"Yes,\" she said.\n"
    r = runner.invoke(app, ["memory", str(runs["rnn"]), str(runs["bi"]), "--text", text, "--max-distance", "10",
                            "--json"])
    assert r.exit_code == 0, r.output
    rnn, bi = json.loads(r.stdout)["models"]
    assert rnn["model"] == "rnn 1×8" and bi["model"] == "lstm bi 1×8" and rnn["checkpoint"] == str(runs["rnn"])
    assert len(rnn["influence"]) == 11 and "influence_right" not in rnn
    assert len(bi["influence"]) == len(bi["influence_right"]) == 11
    assert bi["influence"][0] == bi["influence_right"][0] == 0
    ck = ckpt_io.load(runs["rnn"] / "latest.npz")
    model = CharLM(ck.config, params=ck.params)
    want = influence(model, [ck.meta["vocab"].index(c) for c in text], 10).curve()
    np.testing.assert_allclose(rnn["influence"], want, rtol=1e-5)
    assert rnn["span"] == span(want, 0)


def test_the_command_shows_a_chart_and_a_table_and_writes_a_picture(runs, tmp_path):
    r = runner.invoke(app, ["memory", str(runs["rnn"]), str(runs["bi"]), "--max-distance", "20", "--out",
                            str(tmp_path / "m.svg")], env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    assert "log scale" in r.stdout and "rnn 1×8" in r.stdout and "d=20" in r.stdout and "→ ahead" in r.stdout
    svg = (tmp_path / "m.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") == 3  # rnn; bi left and right
    r = runner.invoke(app, ["memory", str(runs["rnn"]), "--text", "x"])
    assert r.exit_code == 1 and "at least 2 characters" in r.stderr
    r = runner.invoke(app, ["memory", str(runs["rnn"]), "--text", "ab", "--file", "f.txt"])
    assert r.exit_code == 2


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "peephole", "cifg"])
def test_a_bidirectional_models_windows_equal_one_backward_pass_per_prediction(cell):
    """Each cloze guess alone: the whole text read by both stacks, one backward pass from that guess."""

    model = CharLM(ModelConfig(vocab_size=9, cell=cell, layers=2, hidden=6, embed=4, dtype="float64",
                               direction="bi"), seed=3)
    ids = np.random.default_rng(6).integers(0, 9, 30)
    N, D = len(ids), 6
    found = influence(model, ids, max_distance=D)
    _, grads = model.new_grads()
    for t in range(N):
        logits, _, cache = model.network.forward(model.params, ids[None, :], None, model.zero_state(1))
        dlogits = np.zeros_like(logits)
        dlogits[:, t] = softmax(logits[:, t : t + 1])[:, 0]
        dlogits[ids[t], t] -= 1
        d_input = []
        model.network.backward(model.params, dlogits, cache, grads, d_input=d_input)
        fwd = np.linalg.norm(model.params["rnn.weight_ih_l0"].T @ d_input[0], axis=0)  # by position
        bwd = np.linalg.norm(model.params["rnn.weight_ih_l0_reverse"].T @ d_input[1], axis=0)[::-1]
        for d in range(1, D + 1):
            if t - d >= 0:
                assert found.left[t, d] == pytest.approx(fwd[t - d], rel=1e-9, abs=1e-15)
            if t + d < N:
                assert found.right[t, d] == pytest.approx(bwd[t + d], rel=1e-9, abs=1e-15)
        assert fwd[t:].max() == 0 and bwd[: t + 1].max() == 0  # neither stack reads the character itself


def test_a_warm_up_is_read_but_gets_no_rows():
    model = CharLM(ModelConfig(vocab_size=6, cell="gru", layers=1, hidden=5, embed=3, dtype="float64"), seed=1)
    ids = np.random.default_rng(2).integers(0, 6, 25)
    whole = influence(model, ids, 8)
    warm = influence(model, ids, 8, warmup=7)
    np.testing.assert_array_equal(warm.left, whole.left[7:])  # the guesses after the warm-up, reading into it


def test_a_bidirectional_model_without_its_corpus_asks_for_a_text(runs, tmp_path):
    import shutil

    moved = tmp_path / "bi"
    shutil.copytree(runs["bi"], moved)
    meta_path = ckpt_io.load(moved / "latest.npz")
    meta_path.meta["corpus"]["path"] = meta_path.meta["corpus"]["inputs"][0] = str(tmp_path / "gone.txt")
    ckpt_io.save(moved / "latest.npz", meta_path)
    (moved / "best.npz").unlink()
    r = runner.invoke(app, ["memory", str(moved)])
    assert r.exit_code == 1 and "--text or --file" in r.stderr and "Traceback" not in r.output


def test_the_api_refuses_a_distance_that_is_not_a_whole_number(runs):
    import lstmgen

    m = lstmgen.load(runs["rnn"])
    for bad in (2.5, "3", None, 0, 10**6, True):
        with pytest.raises(lstmgen.ConfigError, match="max_distance"):
            m.memory("expr: (a b)", max_distance=bad)
