"""metrics.jsonl's gradient norms: every line holds grad_norm (the global norm before clipping, mean
over the steps since the line before) and clipped (the share of those steps --grad-clip cut); a line
that covers no new step repeats them; lstmgen plot --y grad-norm draws them."""

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstmgen.cli import app
from lstmgen.training import loop as training

runner = CliRunner()
TINY = ["--hidden", "8", "--embed", "4", "--batch-size", "4", "--seq-len", "8", "--workers", "1", "--dtype", "float64"]


@pytest.fixture(scope="module")
def corpus(write_prose) -> Path:
    return write_prose(4000, seed=8)


def lines(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("clip", [0.0, 0.3, 1e6])
def test_each_line_holds_the_mean_norm_and_the_share_clipped_since_the_line_before(corpus, tmp_path, monkeypatch,
                                                                                    clip):
    norms = []
    real = training.clip_grad_norm_
    monkeypatch.setattr(training, "clip_grad_norm_", lambda g, m: norms.append(real(g, m)) or norms[-1])
    r = runner.invoke(app, ["train", str(corpus), "--out", str(tmp_path / "r"), *TINY, "--max-steps", "23",
                            "--eval-every", "10", "--grad-clip", str(clip), "--lr", "0.02"])
    assert r.exit_code == 0, r.output
    got = lines(tmp_path / "r")
    assert [x["step"] for x in got] == [10, 20, 23]  # (log_every = 10: one line per evaluation, one at the end)
    assert len(norms) == 23
    start = 0
    for line in got:
        span = norms[start : line["step"]]
        assert line["grad_norm"] == pytest.approx(sum(span) / len(span), rel=1e-5)
        share = sum(0 < clip < n for n in span) / len(span)
        assert line["clipped"] == pytest.approx(share, abs=1e-4)
        start = line["step"]
    if clip == 0.3:
        assert 0 < sum(x["clipped"] for x in got)  # the setting cut some steps
    if clip in (0.0, 1e6):
        assert all(x["clipped"] == 0 for x in got)


def test_a_line_that_covers_no_new_step_repeats_the_previous_values(corpus, tmp_path):
    run = tmp_path / "r"
    r = runner.invoke(app, ["train", str(corpus), "--out", str(run), *TINY, "--max-steps", "20", "--eval-every", "15",
                            "--grad-clip", "0.2"])
    assert r.exit_code == 0, r.output
    got = lines(run)  # 10: logged; 15: evaluated; 20: logged, then the final evaluation at the same step
    assert [x["step"] for x in got] == [10, 15, 20, 20] and got[-1]["val_loss"] is not None
    *_, before, again = got
    for k in ("train_loss", "grad_norm", "clipped"):
        assert again[k] == before[k] and math.isfinite(again[k])


def test_a_resume_with_nothing_left_to_do_leaves_the_run_as_it_was(corpus, tmp_path):
    run = tmp_path / "r"
    r = runner.invoke(app, ["train", str(corpus), "--out", str(run), *TINY, "--max-steps", "5"])
    assert r.exit_code == 0, r.output
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.name != ".lock"}
    r = runner.invoke(app, ["train", "--resume", str(run), "--max-steps", "3"])  # the budget is spent
    assert r.exit_code == 0, r.output
    assert before == {p.name: p.read_bytes() for p in run.iterdir() if p.name != ".lock"}


def test_plot_draws_the_gradient_norm(corpus, tmp_path):
    run = tmp_path / "r"
    r = runner.invoke(app, ["train", str(corpus), "--out", str(run), *TINY, "--max-steps", "30", "--eval-every", "10"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["plot", str(run), "--y", "grad-norm", "--out", str(tmp_path / "g.svg"), "--width", "40"])
    assert r.exit_code == 0, r.output
    assert "gradient norm before clipping" in r.stdout and "■ r" in r.stdout
    svg = (tmp_path / "g.svg").read_text()
    assert "gradient norm before clipping" in svg and svg.count("<polyline") == 1  # one curve: no validation
    r = runner.invoke(app, ["plot", str(run), "--y", "bits"])
    assert r.exit_code == 2 and "grad-norm" in r.stderr


def test_a_new_run_stopped_before_its_first_step_still_saves_its_checkpoint(corpus, tmp_path):
    run = tmp_path / "r"
    r = runner.invoke(app, ["train", str(corpus), "--out", str(run), *TINY, "--max-time", "0.000001s"])
    assert r.exit_code == 0, r.output
    assert (run / "latest.npz").is_file()  # what "continue with --resume" needs
