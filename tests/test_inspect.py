"""inspect: exports against an independent step-by-step recomputation (and PyTorch), the probe on
the synthetic structured corpus, the statistics, and the command line end to end."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import naive_trace
from typer.testing import CliRunner

from lstmgen import checkpoint as ckpt_io
from lstmgen import probe, probes
from lstmgen.cli import app
from lstmgen.model import CELL_TYPES, CharLM, ModelConfig
from lstmgen.networks import network_for
from lstmgen.synthetic import structured
from lstmgen.text import Vocab
from lstmgen.training import TrainOptions, new_trainer

runner = CliRunner()
VOCAB = ' \n"()abcdefghijklmnopqrstuvwxyz.'
TEXT = 'a "quoted (b c) d" e.\nf (g (h)) "i j"\n  k.'
L, H, E = 2, 5, 4


def run(*args, columns=80):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)})


def make_ckpt(path: Path, cell: str, dtype="float64", seed=0) -> Path:
    """A checkpoint with random (not freshly initialised: larger, so gates saturate) weights."""
    cfg = ModelConfig(vocab_size=len(VOCAB), cell=cell, layers=L, hidden=H, embed=E, dropout=0.0, dtype=dtype)
    m = CharLM(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    m.flat += rng.normal(0, 0.6, m.flat.shape).astype(m.flat.dtype)
    meta = {"vocab": VOCAB, "model": {k: getattr(cfg, k) for k in ("cell", "layers", "hidden", "embed", "dropout",
                                                                   "dtype")},
            "train": {"step": 7, "val_frac": 0.1}, "corpus": {"name": "none.txt", "path": "/nonexistent/none.txt",
                                                              "sha256": "0" * 64, "chars": 0}}
    ckpt_io.save(path, ckpt_io.Checkpoint(params=m.params, meta=meta))
    return path


@pytest.mark.parametrize("cell", CELL_TYPES)
def test_export_equals_naive_recomputation(tmp_path, cell):
    ck = make_ckpt(tmp_path / "m.npz", cell)
    out = tmp_path / "x.npz"
    r = run("inspect", ck, "--text", TEXT, "--export", out)
    assert r.exit_code == 0, r.output
    z = np.load(out, allow_pickle=False)
    names = probe.quantities(ModelConfig(vocab_size=5, cell=cell))
    assert set(z.files) == {"text", "probs"} | {f"layer{k}.{q}" for k in range(L) for q in names}
    assert z["text"].shape == () and z["text"].dtype.kind == "U" and str(z["text"]) == TEXT
    P = {k: v for k, v in np.load(ck, allow_pickle=False).items() if not k.startswith("meta")}
    ids = Vocab(VOCAB).encode(TEXT)
    layers, probs = naive_trace(P, cell, L, ids)
    T = len(TEXT)
    for k in range(L):
        for q in names:
            a = z[f"layer{k}.{q}"]
            assert a.shape == (T, H) and a.dtype == np.float64
            np.testing.assert_allclose(a, layers[k][q], rtol=1e-10, atol=1e-12, err_msg=f"layer{k}.{q}")
    assert z["probs"].shape == (T, len(VOCAB))
    np.testing.assert_allclose(z["probs"], probs, rtol=1e-10, atol=1e-14)
    if cell == "cifg":
        np.testing.assert_allclose(z["layer0.f"], 1 - z["layer0.i"], rtol=0, atol=1e-15)
    # the weights were made large enough that the statistics have something to count
    assert any(((z[f"layer{k}.{q}"] > 0.9) | (z[f"layer{k}.{q}"] < 0.1)).any()
               for k in range(L) for q in names if q in probe.SIGMOID) or cell in ("rnn", "jordan")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_export_agrees_with_pytorch(tmp_path, cell):
    torch = pytest.importorskip("torch")
    ck = make_ckpt(tmp_path / "m.npz", cell)
    out = tmp_path / "x.npz"
    assert run("inspect", ck, "--text", TEXT, "--export", out).exit_code == 0
    z = np.load(out, allow_pickle=False)
    P = {k: torch.from_numpy(v) for k, v in np.load(ck, allow_pickle=False).items() if not k.startswith("meta")}
    ids = torch.from_numpy(Vocab(VOCAB).encode(TEXT))
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    x = P["embedding.weight"][ids][:, None, :]  # (T, 1, E)
    with torch.no_grad():
        for k in range(L):  # one layer at a time, to compare every layer's outputs
            rnn = cls(E if k == 0 else H, H, num_layers=1).double()
            rnn.load_state_dict({n.replace(f"_l{k}", "_l0"): P[f"rnn.{n}"] for n in
                                 (f"weight_ih_l{k}", f"weight_hh_l{k}", f"bias_ih_l{k}", f"bias_hh_l{k}")})
            x, _ = rnn(x)
            np.testing.assert_allclose(z[f"layer{k}.h"], x[:, 0].numpy(), rtol=1e-10, atol=1e-12)
        logits = x[:, 0] @ P["decoder.weight"].T + P["decoder.bias"]
        np.testing.assert_allclose(z["probs"], torch.softmax(logits, -1).numpy(), rtol=1e-10, atol=1e-14)


def test_table_output_has_the_text_and_gate_names(tmp_path, cell):
    ck = make_ckpt(tmp_path / "m.npz", cell, dtype="float32")
    r = run("inspect", ck, "--text", TEXT, "--rows", "100", "--top-units", "2", "--probe", "quotes", "--params",
            columns=200)
    assert r.exit_code == 0, r.output
    o = r.output
    for q in probe.quantities(ModelConfig(vocab_size=5, cell=cell)):
        assert f" {q} " in o or f" {q} (2)" in o
    for word in ("quoted", "top 3 guesses", "bits", "parameters", "embedding.weight", "decoder.bias",
                 "--probe quotes", "chance"):
        assert word in o, word
    assert "␣" in o and "↵" in o  # the text shown visibly in the table
    if cell not in ("rnn", "jordan"):  # (no sigmoid gates to saturate)
        assert "gate saturation" in o and "integrators" in o
    blocks = network_for(ModelConfig(vocab_size=5, cell=cell)).spec.gate_blocks
    if len(blocks) > 1:
        assert all(f"W_{g}" in o for g in blocks)
    if cell == "peephole":
        assert "p_f" in o
    # a narrow terminal: the row essentials stay, what does not fit is named
    r = run("inspect", ck, "--text", TEXT, "--rows", "3", "--top-units", "3", columns=60)
    assert r.exit_code == 0, r.output
    if cell not in ("rnn", "jordan"):
        assert "narrow terminal" in r.output
    assert all(len(line) <= 60 for line in r.output.splitlines())
    assert " bits" in r.output and " next " in r.output


def test_warmup_equals_the_tail_of_a_longer_run(tmp_path):
    ck = make_ckpt(tmp_path / "m.npz", "lstm")
    whole, part = tmp_path / "whole.npz", tmp_path / "part.npz"
    assert run("inspect", ck, "--text", TEXT, "--export", whole).exit_code == 0
    assert run("inspect", ck, "--text", TEXT[10:], "--warmup", TEXT[:10], "--export", part).exit_code == 0
    a, b = np.load(whole), np.load(part)
    assert str(b["text"]) == TEXT[10:]
    for key in ("layer1.c", "layer0.h", "probs"):
        np.testing.assert_allclose(b[key], a[key][10:], rtol=1e-12, atol=1e-14)
    # the same through --warmup-chars on a file
    f = tmp_path / "t.txt"
    f.write_text(TEXT, encoding="utf-8")
    assert run("inspect", ck, "--file", f, "--warmup-chars", "10", "--export", part).exit_code == 0
    np.testing.assert_allclose(np.load(part)["layer1.c"], a["layer1.c"][10:], rtol=1e-12, atol=1e-14)


def test_chunked_trace_equals_one_pass(tmp_path):
    m = CharLM(ModelConfig(vocab_size=len(VOCAB), cell="gru", layers=2, hidden=H, embed=E, dtype="float64"))
    v = Vocab(VOCAB)
    one = probe.trace_text(m, v, TEXT * 3, chunk=10_000)
    chunked = probe.trace_text(m, v, TEXT * 3, chunk=7)
    for k in range(2):
        for q in one.layers[k]:
            np.testing.assert_allclose(chunked.layers[k][q], one.layers[k][q], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(chunked.probs, one.probs, rtol=1e-12)


def test_csv_and_json_exports(tmp_path):
    ck = make_ckpt(tmp_path / "m.npz", "gru")
    npz, csv_path = tmp_path / "x.npz", tmp_path / "x.csv"
    r = run("inspect", ck, "--text", TEXT, "--export", npz, "--csv", csv_path)
    assert r.exit_code == 0 and r.stdout == ""  # files are the product; messages on stderr
    import csv

    with open(csv_path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(TEXT) * L * 4 * H
    z = np.load(npz)
    for row in rows[:: 37]:
        t, k, j = int(row["t"]), int(row["layer"]), int(row["unit"])
        assert row["char"] == TEXT[t]
        assert float(row["value"]) == pytest.approx(z[f"layer{k}.{row['quantity']}"][t, j], rel=1e-6, abs=1e-9)
    r = run("inspect", ck, "--text", TEXT, "--json", "--units", "1,3", "--probe", "brackets", "--params")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["text"] == TEXT and len(doc["steps"]) == len(TEXT)
    s = doc["steps"][4]
    assert s["char"] == TEXT[4] and len(s["values"]["z"]) == 2 and len(s["top"]) == 3
    assert s["values"]["z"][1] == pytest.approx(z["layer1.z"][4, 3])
    assert s["surprisal_bits"] == pytest.approx(-np.log2(z["probs"][4, VOCAB.index(TEXT[5])]))
    assert doc["steps"][-1]["surprisal_bits"] is None
    assert doc["probe"]["measure"] == "correlation" and len(doc["probe"]["ranking"]) > 0
    assert {g["gate"] for g in doc["saturation"]} == {"r", "z"}
    assert sum(p["count"] for p in doc["params"] if not p["block"]) == CharLM(ck_config(ck)).num_params


def ck_config(path):
    return ckpt_io.load(path).config


def test_html_and_default_text(tmp_path):
    ck = make_ckpt(tmp_path / "m.npz", "lstm", dtype="float32")
    page = tmp_path / "v.html"
    r = run("inspect", ck, "--html", page, "--rows", "5")  # the corpus is not at hand: a sample is shown
    assert r.exit_code == 0, r.output
    assert "sample of the model" in r.output
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and 'id="text"' in html and "sample of the model" in html
    assert "narrow terminal" not in html and "guesses" not in html.split("<script")[0].split("<body>")[0]
    # with the corpus at hand, the default is the start of its validation tail
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT * 40, encoding="utf-8")
    d = dict(np.load(ck, allow_pickle=False))
    meta = json.loads(str(d["meta.json"]))
    meta["corpus"]["path"] = str(corpus)
    ckpt_io.save(ck, ckpt_io.Checkpoint(params={k: v for k, v in d.items() if k != "meta.json"}, meta=meta))
    r = run("inspect", ck, "--json")
    doc = json.loads(r.stdout)
    assert "validation tail of c.txt" in doc["source"] and doc["text"] and TEXT.find(doc["text"][:20]) >= 0


@pytest.mark.parametrize("args, code, words", [
    (["--layer", "5"], 2, "layer"),
    (["--units", "0,99"], 2, "units"),
    (["--units", "a,b"], 2, "comma-separated"),
    (["--quantity", "z"], 2, "quantity"),
    (["--quantities", "i,q"], 2, "quantities"),
    (["--rank-by", "fame"], 2, "rank-by"),
    (["--probe", "nonsense"], 2, "--probe"),
    (["--probe", "regex:("], 2, "regular expression"),
    (["--text", "abc", "--probe", "quotes"], 1, "nothing to probe"),
    (["--text", "héllo"], 1, "é"),
    (["--text", ""], 1, "empty"),
    (["--file", "/nonexistent/x.txt"], 1, "not found"),
    (["--text", "abc", "--export", "/nonexistent/dir/x.npz"], 1, "cannot write"),
])
def test_bad_input_one_line(tmp_path, args, code, words):
    ck = make_ckpt(tmp_path / "m.npz", "lstm")
    r = run("inspect", ck, *args)
    assert r.exit_code == code, r.output
    assert words in r.output and "Traceback" not in r.output


def test_auc_and_correlation_against_brute_force():
    rng = np.random.default_rng(0)
    v = np.round(rng.normal(size=(60, 4)), 1)  # ties on purpose
    y = (rng.random(60) < 0.3).astype(float)
    pos, neg = v[y == 1], v[y == 0]
    brute = [np.mean([(p > n) + 0.5 * (p == n) for p in pos[:, j] for n in neg[:, j]]) for j in range(4)]
    np.testing.assert_allclose(probes.auc(v, y), brute, rtol=1e-12)
    c = rng.normal(size=60)
    np.testing.assert_allclose(probes.correlation(v, c), [np.corrcoef(v[:, j], c)[0, 1] for j in range(4)], rtol=1e-10)


def test_labels():
    text = 'a "b (c" [d])\n  e'
    assert probes.quote_state(text).tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert probes.bracket_depth(text).tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 1, 0, 0, 0, 0, 0]
    assert probes.line_position(text)[-4:].tolist() == [0, 1, 2, 3]
    assert probes.indent(text)[-4:].tolist() == [0, 1, 2, 2]
    assert probes.make_label("regex:b.*?c", text).values.tolist()[:8] == [0, 0, 0, 1, 1, 1, 1, 0]


def test_regex_probe_through_the_cli(tmp_path):
    """A valid pattern is accepted whatever it matches; only the inspected text decides."""
    ck = make_ckpt(tmp_path / "m.npz", "lstm")
    r = run("inspect", ck, "--text", TEXT, "--probe", "regex:quoted", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["probe"]["description"] == "inside a match of /quoted/"


def test_saturation_counts():
    m = CharLM(ModelConfig(vocab_size=len(VOCAB), cell="lstm", layers=1, hidden=H, embed=E, dtype="float64"))
    trace = probe.trace_text(m, Vocab(VOCAB), TEXT)
    trace.layers[0]["f"][:] = 0.5
    trace.layers[0]["f"][:, 2] = 0.95  # unit 2: an integrator
    trace.layers[0]["f"][: len(TEXT) // 2, 3] = 0.05  # unit 3: half the time left-saturated
    s = {x.gate: x for x in probe.saturation(trace)}["f"]
    assert s.right.tolist() == [0, 0, 1, 0, 0] and s.left[3] == pytest.approx((len(TEXT) // 2) / len(TEXT))
    assert s.mostly_right == 1 and s.mostly_left == 0


@pytest.fixture(scope="module")
def structured_models(tmp_path_factory):
    """A small LSTM trained for a few seconds on the structured corpus, and the same model untrained."""
    d = tmp_path_factory.mktemp("probe")
    corpus = d / "structured.txt"
    corpus.write_text(structured(60_000, seed=1), encoding="utf-8")
    opts = TrainOptions(cell="lstm", layers=1, hidden=32, embed=16, dropout=0.0, seq_len=64, batch_size=16,
                        lr=1e-2, warmup=10, max_steps=600, epochs=None, eval_every=10**6, val_frac=0.1)
    untrained = new_trainer(corpus, d / "untrained", TrainOptions(**{**opts.__dict__})).model
    trainer = new_trainer(corpus, d / "run", opts)
    trainer.run()
    return trainer, untrained


@pytest.mark.parametrize("spec, at_least", [("brackets", 0.65), ("quotes", 0.5)])
def test_probe_finds_units_that_track_structure(structured_models, spec, at_least):
    trainer, untrained = structured_models
    text = structured(3000, seed=99)  # text the model has not seen
    found = probes.probe(probe.trace_text(trainer.model, trainer.vocab, text), spec)
    base = probes.probe(probe.trace_text(untrained, trainer.vocab, text), spec)
    best, best_untrained = found.ranking[0].strength, base.ranking[0].strength
    print(f"{spec}: trained {best:.3f}, untrained {best_untrained:.3f}, chance {found.chance:.3f}")
    assert best >= at_least
    assert best >= 2.5 * found.chance
    assert best >= best_untrained + 0.1


def test_probe_through_the_cli_as_a_subprocess(structured_models, tmp_path):
    trainer, _ = structured_models
    f = tmp_path / "s.txt"
    f.write_text(structured(3000, seed=99), encoding="utf-8")
    p = subprocess.run([sys.executable, "-m", "lstmgen", "inspect", str(trainer.run_dir), "--file", str(f),
                        "--probe", "brackets", "--json"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    top = doc["probe"]["ranking"][0]
    assert abs(top["score"]) >= 0.65 and doc["probe"]["chance"] < abs(top["score"])
    p = subprocess.run([sys.executable, "-m", "lstmgen", "inspect", str(trainer.run_dir), "--file", str(f),
                        "--probe", "brackets", "--rows", "3"], capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "COLUMNS": "120"})
    assert p.returncode == 0 and "bracket nesting depth" in p.stdout and "layer 0" in p.stdout
