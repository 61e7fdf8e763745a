"""Checkpoints of every network kind written before a refactor (tests/fixtures/behaviour, made by
make_behaviour.py) still load, and eval, sample and fill give what they gave then: losses to 1e-9
relative, samples and fills byte for byte."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstmgen.cli import app

HERE = Path(__file__).resolve().parent / "fixtures" / "behaviour"
EXPECTED = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))
runner = CliRunner()


@pytest.mark.parametrize("kind", sorted(EXPECTED["kinds"]))
def test_a_checkpoint_from_before_gives_the_same_eval_sample_and_fill(kind, tmp_path):
    want = EXPECTED["kinds"][kind]
    ck = str(HERE / f"{kind}.npz")
    text = tmp_path / "eval.txt"
    text.write_text(EXPECTED["eval_text"], encoding="utf-8")
    r = runner.invoke(app, ["eval", ck, str(text), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["chars"] == want["eval"]["chars"] and got["direction"] == want["eval"]["direction"]
    assert got["loss"] == pytest.approx(want["eval"]["loss"], rel=1e-9)
    if "sample" in want:
        r = runner.invoke(app, ["sample", ck, *EXPECTED["sample"]])
        assert r.exit_code == 0, r.output
        assert r.stdout == want["sample"]
    r = runner.invoke(app, ["fill", ck, EXPECTED["fill_text"], "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["text"] == want["fill"]["text"]
    for g, w in zip(got["filled"], want["fill"]["filled"], strict=True):
        assert (g["index"], g["char"]) == (w["index"], w["char"])
        assert [c for c, _ in g["top"]] == [c for c, _ in w["top"]]
        assert [p for _, p in g["top"]] == pytest.approx([p for _, p in w["top"]], rel=1e-9)
