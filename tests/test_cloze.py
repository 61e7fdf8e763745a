"""Bidirectional cloze models: gradients, agreement with PyTorch per direction, training that beats a
forward model at filling in, the fill command, and the pieces around them (eval, sample, inspect)."""

import json

import numpy as np
import pytest
from conftest import numeric_grad
from typer.testing import CliRunner

from lstmgen.cells import CELLS
from lstmgen.cli import app
from lstmgen.model import CharLM, ModelConfig
from lstmgen.synthetic import structured

runner = CliRunner()
B, T, E, H, V, L = 2, 3, 4, 5, 7, 2


def _both(traced):
    """A bidirectional trace as (forward stack's layers, backward stack's layers, cloze probs)."""
    return traced.layers, traced.reverse, traced.probs


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("V_", [3, V])  # layer 0 by table lookup (small V) and by embedding GEMM
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("cell", list(CELLS))  # every cell but jordan
def test_gradients_match_central_differences(cell, dropout, V_):
    cfg = ModelConfig(vocab_size=V_, cell=cell, layers=L, hidden=H, embed=E, dropout=dropout, dtype="float64",
                      direction="bi")
    m = CharLM(cfg, seed=3)
    rng = np.random.default_rng(11)
    m.flat += rng.normal(0, 0.3, m.flat.shape)
    x, right = rng.integers(0, V_, (B, T)), rng.integers(0, V_, (B, 2))
    state = [tuple(rng.normal(0, 0.5, a.shape) for a in s) for s in m.zero_state(B)]
    w = [tuple(rng.normal(0, 1, a.shape) for a in s) for s in state]

    def f():
        r = np.random.default_rng(5) if dropout else None
        loss, _, final, _ = m.loss_and_grads(x, None, state, rng=r)
        return loss + sum(float(np.sum(a * b)) for ws, ss in zip(w, final) for a, b in zip(ws, ss))

    r = np.random.default_rng(5) if dropout else None
    _, grads, _, dstate0 = m.loss_and_grads(x, None, state, rng=r, dstate=w)
    assert any(name.endswith("_reverse") for name in grads)
    for name, p in m.params.items():
        num = numeric_grad(f, p)
        np.testing.assert_allclose(grads[name], num, rtol=1e-5, atol=1e-8, err_msg=f"{cell} {name}")
        assert np.abs(num).max() > 0, name
    for k, layer in enumerate(state):
        for j, s in enumerate(layer):
            np.testing.assert_allclose(dstate0[k][j], numeric_grad(f, s), rtol=1e-5, atol=1e-8)
    # with a right context the backward stack starts from its warm-up instead of zeros
    a, *_ = m.loss_and_grads(x, right, state)
    b, *_ = m.loss_and_grads(x, None, state)
    assert a != b


def test_chunk_loss_equals_the_whole_row_loss_without_context():
    """One chunk with no right context and a zero state is exactly the whole-row (eval) definition."""
    m = CharLM(ModelConfig(vocab_size=V, hidden=H, embed=E, layers=L, dtype="float64", direction="bi"), seed=1)
    x = np.random.default_rng(2).integers(0, V, (3, 9))
    loss, *_ = m.loss_and_grads(x, None, m.zero_state(3))
    assert m.sum_losses(x, x)[0] / x.size == pytest.approx(loss, rel=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_each_direction_agrees_with_pytorch(cell):
    torch = pytest.importorskip("torch")
    cfg = ModelConfig(vocab_size=V, cell=cell, layers=L, hidden=H, embed=E, dtype="float64", direction="bi")
    m = CharLM(cfg, seed=7)
    ids = np.random.default_rng(3).integers(0, V, 11)
    fwd, bwd, probs = _both(m.trace(ids))
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    P = {k: torch.from_numpy(v.copy()) for k, v in m.params.items()}
    emb = P["embedding.weight"][torch.from_numpy(ids)][:, None, :]  # (T, 1, E)
    with torch.no_grad():
        for sfx, got, seq in (("", fwd, emb), ("_reverse", bwd, emb.flip(0))):
            rnn = cls(E, H, num_layers=L).double()
            rnn.load_state_dict({n: P[f"rnn.{n}{sfx}"] for n in rnn.state_dict()})
            out, _ = rnn(seq)
            out = out[:, 0].numpy()
            np.testing.assert_allclose(got[-1]["h"], out if not sfx else out[::-1], rtol=1e-10, atol=1e-12)
        # one layer: nn.LSTM(bidirectional=True) gives both stacks; the cloze model reads them shifted
        one = CharLM(ModelConfig(vocab_size=V, cell=cell, layers=1, hidden=H, embed=E, dtype="float64",
                                 direction="bi"), seed=8)
        Q = {k: torch.from_numpy(v.copy()) for k, v in one.params.items()}
        birnn = cls(E, H, num_layers=1, bidirectional=True).double()
        birnn.load_state_dict({n: Q[f"rnn.{n}"] for n in birnn.state_dict()})
        out, _ = birnn(Q["embedding.weight"][torch.from_numpy(ids)][:, None, :])
        out = out[:, 0].numpy()  # (T, 2H): [h→_t; h←_t]
        zero = np.zeros((1, H))
        dec_in = np.concatenate([np.concatenate([zero, out[:-1, :H]]), np.concatenate([out[1:, H:], zero])], 1)
        logits = dec_in @ one.params["decoder.weight"].T + one.params["decoder.bias"]
        want = np.exp(logits - logits.max(1, keepdims=True))
        want /= want.sum(1, keepdims=True)
        np.testing.assert_allclose(_both(one.trace(ids))[2], want, rtol=1e-10, atol=1e-13)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A bidirectional and a forward LSTM of the same size, trained as long on the structured corpus."""
    d = tmp_path_factory.mktemp("cloze")
    text = structured(60_000, seed=3)
    (d / "train.txt").write_text(text[:50_000], encoding="utf-8")
    (d / "held.txt").write_text(text[50_000:52_000], encoding="utf-8")
    common = ["--hidden", "48", "--embed", "16", "--max-steps", "150", "--batch-size", "16", "--seq-len", "48",
              "--eval-every", "75", "--lr", "0.01", "--workers", "1", "--dropout", "0"]
    for direction in ("bi", "fwd"):
        r = cli("train", d / "train.txt", "--out", d / direction, "--direction", direction, *common)
        assert r.exit_code == 0, r.output
    return d


def test_a_bidirectional_model_beats_a_forward_one_at_filling_in(trained):
    d = trained
    losses = {k: json.loads(cli("eval", d / k, d / "held.txt", "--json").stdout) for k in ("bi", "fwd")}
    assert losses["bi"]["direction"] == "bi" and losses["fwd"]["direction"] == "fwd"
    assert losses["bi"]["loss"] < losses["fwd"]["loss"]
    held = (d / "held.txt").read_text(encoding="utf-8")
    rng = np.random.default_rng(0)
    spots = [t for t in rng.choice(np.arange(20, len(held) - 20), 80, replace=False) if held[t] not in "_\n"][:60]
    hits = {}
    for k in ("bi", "fwd"):
        hits[k] = 0
        for t in spots:
            window = held[t - 20 : t] + "_" + held[t + 1 : t + 21]
            r = cli("fill", d / k, window)
            assert r.exit_code == 0, r.output
            hits[k] += r.stdout.rstrip("\n")[20] == held[t]
    assert hits["bi"] > hits["fwd"], hits


def test_fill(trained):
    ck = trained / "bi"
    text = "line: the b_ight river\nexpr: (a (_ c))"
    a = cli("fill", ck, text, "--temperature", "1", "--seed", "4", "--json")
    b = cli("fill", ck, text, "--temperature", "1", "--seed", "4", "--json")
    assert a.exit_code == 0 and a.stdout == b.stdout  # deterministic with a seed
    doc = json.loads(a.stdout)
    assert [f["index"] for f in doc["filled"]] == [i for i, c in enumerate(text) if c == "_"]
    assert len(doc["text"]) == len(text) and "_" not in doc["text"]
    assert all(len(f["top"]) == 5 and abs(sum(p for _, p in f["top"]) - 1) < 0.5 for f in doc["filled"])
    r = cli("fill", ck, "line: no masks here")
    assert r.exit_code == 0 and r.stdout == "line: no masks here\n"
    r = cli("fill", ck, "_____")
    assert r.exit_code == 0 and len(r.stdout.rstrip("\n")) == 5 and "_" not in r.stdout
    r = cli("fill", ck, "line: ☃ and ✈_")
    assert r.exit_code == 1 and "☃" in r.stderr and "✈" in r.stderr and "Traceback" not in r.output
    r = cli("fill", trained / "fwd", "line: the b_ight")
    assert r.exit_code == 0 and "left only" in r.stderr


def test_sample_refuses_and_inspect_shows_both_stacks(trained, tmp_path):
    r = cli("sample", trained / "bi")
    assert r.exit_code != 0 and "lstmgen fill" in r.stderr and "Traceback" not in r.output
    out = tmp_path / "x.npz"
    r = cli("inspect", trained / "bi", "--text", "line: the bright river", "--dir", "bwd", "--export", out)
    assert r.exit_code == 0, r.output
    z = np.load(out)
    assert "layer0_reverse.c" in z.files and "layer0.c" in z.files
    np.testing.assert_allclose(z["probs"].sum(1), 1, rtol=1e-5)
    r = cli("inspect", trained / "bi", "--text", "line: the bright rivr", "--rows", "3")
    assert r.exit_code == 0 and "most surprising characters" in r.stdout
    r = cli("inspect", trained / "fwd", "--dir", "bwd")
    assert r.exit_code == 2 and "--dir" in r.stderr


def test_workers_give_the_same_bidirectional_math(tmp_path):
    text = structured(12_000, seed=5)
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    common = ["--hidden", "12", "--embed", "6", "--max-steps", "8", "--batch-size", "4", "--seq-len", "16",
              "--eval-every", "4", "--dtype", "float64", "--direction", "bi", "--lr-schedule", "constant"]
    for n in (1, 2):
        r = cli("train", tmp_path / "t.txt", "--out", tmp_path / f"w{n}", "--workers", n, *common)
        assert r.exit_code == 0, r.output
    a, b = np.load(tmp_path / "w1" / "latest.npz"), np.load(tmp_path / "w2" / "latest.npz")
    for k in a.files:
        if not k.startswith("meta"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-9, atol=1e-9, err_msg=k)


def test_fill_reads_unfilled_masks_as_the_current_guess():
    m = CharLM(ModelConfig(vocab_size=4, hidden=6, embed=3, layers=1, dtype="float64", direction="bi"), seed=2)
    ids = np.array([0, 1, 2, 3, 0, 1])
    masked = np.array([False, True, False, True, False, False])
    filled, done = m.network.fill(m.params, ids, masked, lambda p: int(np.argmax(p)), 0)
    assert sorted(t for t, _, _ in done) == [1, 3]
    assert all(filled[t] == ids[t] for t in range(6) if not masked[t])


def test_one_pass_over_a_long_text_is_not_worse_than_short_windows(trained):
    """Training gives the backward stack a right context, so reading a whole file behaves like training."""
    from lstmgen import checkpoint as ckpt_io
    from lstmgen.text import Vocab

    ck = ckpt_io.load(trained / "bi")
    m = CharLM(ck.config, params=ck.params)
    ids = Vocab(ck.meta["vocab"]).encode((trained / "held.txt").read_text(encoding="utf-8"))
    whole = m.sum_losses(ids[None, :], ids[None, :])[0] / len(ids)
    rows = ids[: len(ids) // 48 * 48].reshape(-1, 48)  # windows as long as a training chunk
    assert whole <= m.sum_losses(rows, rows)[0] / rows.size + 0.01
