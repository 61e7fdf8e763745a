"""lstmgen gradcheck: passes on every cell, fails (exit 1, naming the tensor) on a broken backward pass."""

import json

import pytest
from typer.testing import CliRunner

from lstmgen.cli import app
from lstmgen.networks.forward import ForwardLM

runner = CliRunner()


def gradcheck(*args):
    return runner.invoke(app, ["gradcheck", *map(str, args)])


@pytest.mark.parametrize("layers", [1, 2])
def test_passes_on_every_cell(cell, layers):
    r = gradcheck("--cell", cell, "--layers", layers, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] is True
    names = [t["name"] for t in doc["tensors"]]
    recurrent = "rnn.weight_yh_l0" if cell == "jordan" and layers == 1 else f"rnn.weight_hh_l{layers - 1}"
    assert "decoder.weight" in names and recurrent in names  # (jordan's layer 0 reads y, not h)
    # the initial state is checked too, each part named as the checkpoint's state.l{k}.* keys
    want = {"lstm": ["h", "c"], "peephole": ["h", "c"], "cifg": ["h", "c"], "gru": ["h"], "rnn": ["h"]}
    parts = [["h", "y"]] + [["h"]] * (layers - 1) if cell == "jordan" else [want[cell]] * layers
    assert [n for n in names if n.startswith("initial state")] == [
        f"initial state l{k}.{p}" for k, layer in enumerate(parts) for p in layer]
    assert all(t["max_rel_error"] < 1e-5 and t["checked"] > 0 for t in doc["tensors"])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "peephole", "cifg"])
def test_passes_on_bidirectional_models(cell):
    r = gradcheck("--cell", cell, "--direction", "bi", "--json")
    assert r.exit_code == 0, r.output
    names = [t["name"] for t in json.loads(r.stdout)["tensors"]]
    assert "rnn.weight_hh_l1_reverse" in names and "decoder.weight" in names


def test_fails_and_names_the_tensor_when_backward_is_broken(monkeypatch):
    real = ForwardLM.backward

    def broken(self, params, dlogits, cache, grads, dstate=None, d_input=None):
        out = real(self, params, dlogits, cache, grads, dstate, d_input)
        grads["rnn.weight_hh_l1"][0, 0] *= 1.01  # one element off by 1 %
        return out

    monkeypatch.setattr(ForwardLM, "backward", broken)
    r = gradcheck("--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert not doc["ok"]
    bad = [t for t in doc["tensors"] if not t["ok"]]
    assert [t["name"] for t in bad] == ["rnn.weight_hh_l1"] and bad[0]["worst"] == [0, 0]
    assert "gradient check failed: rnn.weight_hh_l1" in r.stderr


def test_a_checkpoint_is_checked_on_a_sample_of_elements(tmp_path):
    from lstmgen.synthetic import prose

    corpus = tmp_path / "t.txt"
    corpus.write_text(prose(5000, seed=1), encoding="utf-8")
    r = runner.invoke(app, ["train", str(corpus), "--out", str(tmp_path / "run"), "--hidden", "16", "--embed", "8",
                            "--max-steps", "3", "--batch-size", "4", "--seq-len", "16", "--workers", "1"])
    assert r.exit_code == 0, r.output
    r = gradcheck(tmp_path / "run", "--samples", "12", "--seq-len", "6")
    assert r.exit_code == 0, r.output
    assert "lstm 1×16" in r.stdout and "up to 12 per tensor" in r.stdout


def test_bad_options_are_usage_errors():
    r = gradcheck("--direction", "sideways")
    assert r.exit_code == 2 and "--direction" in r.stderr
    r = gradcheck("--cell", "transformer")
    assert r.exit_code == 2 and "--cell" in r.stderr
