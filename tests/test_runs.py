"""lstmgen runs and lstmgen plot: the table and JSON of run directories, curves in the terminal and as SVG."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lstmgen import chart
from lstmgen.cli import app
from lstmgen.model import CharLM, ModelConfig
from lstmgen.runs import Curve
from lstmgen.synthetic import prose

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    corpus = root.parent / "tales.txt"
    corpus.write_text(prose(20_000, seed=5), encoding="utf-8")
    common = ["--embed", "8", "--batch-size", "8", "--seq-len", "16", "--eval-every", "5", "--workers", "1"]
    for name, hidden, steps in (("small", 8, 10), ("big", 48, 30)):
        r = cli("train", corpus, "--out", root / name, "--hidden", hidden, "--max-steps", steps, *common)
        assert r.exit_code == 0, r.output
        assert f"lstmgen plot {root / name}" in r.stderr and "lstmgen runs" in r.stderr
    (root / "not-a-run").mkdir()
    return root


def test_runs_json_sorted_by_best_validation_loss(runs_dir):
    r = cli("runs", runs_dir, "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [Path(x["run"]).name for x in rows] == ["big", "small"]  # 48 units for 30 steps learn more
    big = rows[0]
    assert big["cell"] == "lstm" and big["direction"] == "fwd" and big["layers"] == 1 and big["hidden"] == 48
    assert big["step"] == 30 and big["corpus"] == "tales.txt"
    assert big["best_val_bpc"] == pytest.approx(big["best_val_loss"] / 0.6931471805599453)
    vocab = len(set(prose(20_000, seed=5)))
    assert big["params"] == CharLM(ModelConfig(vocab_size=vocab, hidden=48, embed=8, layers=1)).num_params
    assert rows[0]["best_val_loss"] < rows[1]["best_val_loss"]


def test_runs_table_and_an_empty_directory(runs_dir, tmp_path):
    r = cli("runs", runs_dir)
    assert r.exit_code == 0 and "big" in r.stdout and "lstm 1×48" in r.stdout
    assert json.loads(cli("runs", tmp_path, "--json").stdout) == []
    r = cli("runs", tmp_path / "missing")
    assert r.exit_code == 1 and "no such directory" in r.stderr


def test_plot_in_the_terminal_and_as_svg_and_html(runs_dir, tmp_path):
    svg = tmp_path / "c.svg"
    r = cli("plot", runs_dir / "small", runs_dir / "big", "--out", svg, "--width", "60")
    assert r.exit_code == 0, r.output
    assert "●" in r.stdout and "small" in r.stdout and "big" in r.stdout and "step" in r.stdout
    root = ET.fromstring(svg.read_text())
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 4  # train and validation of each run
    assert "http" not in svg.read_text().replace("http://www.w3.org/2000/svg", "")
    page = tmp_path / "c.html"
    r = cli("plot", runs_dir / "big", "--x", "time", "--out", page)
    assert r.exit_code == 0 and "<svg" in page.read_text() and "training time" in page.read_text()


@pytest.mark.parametrize("args, code, needle", [
    (["--x", "epoch"], 2, "is not one of step, time"),
    (["--out", "c.png"], 2, "write a .svg or .html file"),
])
def test_plot_bad_options_are_one_line(runs_dir, args, code, needle):
    r = cli("plot", runs_dir / "big", *args)
    assert r.exit_code == code and needle in r.stderr and "Traceback" not in r.output


def test_plot_refuses_a_directory_that_is_not_a_run(runs_dir):
    r = cli("plot", runs_dir / "not-a-run")
    assert r.exit_code == 1 and "is not a run directory" in r.stderr


def test_grid_places_a_falling_curve_from_top_left_to_bottom_right():
    c = Curve("x", x=[0, 1, 2, 3], y=[4.0, 3.0, 2.0, 1.0], kind="val")
    cells, labels, axis = chart.grid([c], width=31, height=10)
    marks = [(r, col) for r, row in enumerate(cells) for col, (ch, _) in enumerate(row) if ch == "●"]
    assert marks[0] == (0, 0) and marks[-1] == (9, 30)
    assert sorted(marks, key=lambda m: m[1]) == sorted(marks)  # lower as x grows
    assert any(labels) and axis.strip().startswith("0")


def test_a_run_whose_model_cannot_be_built_is_one_rows_problem(runs_dir, tmp_path):
    """A checkpoint whose metadata names a network lstmgen refuses (jordan + bi) is listed with its
    problem; the other runs are listed as ever (the refusal moved from ModelConfig to the network)."""
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(runs_dir / "big", root / "big")
    bad = root / "odd"
    shutil.copytree(runs_dir / "small", bad)
    with np.load(bad / "latest.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta.json"]))
    meta["model"].update(cell="jordan", direction="bi")
    arrays["meta.json"] = np.array(json.dumps(meta))
    np.savez(bad / "latest.npz", **arrays)
    r = cli("runs", root, "--json")
    assert r.exit_code == 0, r.output
    rows = {Path(x["run"]).name: x for x in json.loads(r.stdout)}
    assert set(rows) == {"big", "odd"} and "Jordan" in rows["odd"].get("problem", "")
