"""Budgets: --max-time alone is the budget; on --resume, budgets given anew replace all recorded ones."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lstmgen.cli import app

runner = CliRunner()
SMALL = ["--hidden", "16", "--embed", "8", "--batch-size", "4", "--seq-len", "16", "--eval-every", "10",
         "--workers", "1"]


@pytest.fixture(scope="module")
def corpus(write_prose) -> Path:
    return write_prose(3_000, seed=1)


def train(*args):
    r = runner.invoke(app, ["train", *map(str, args)])
    assert r.exit_code == 0, r.output
    return r


def train_meta(run: Path) -> dict:
    with np.load(run / "latest.npz") as z:
        return json.loads(str(z["meta.json"]))["train"]


def test_max_time_alone_replaces_the_default_epochs(corpus, tmp_path):
    r = train(corpus, "--out", tmp_path / "r", *SMALL, "--max-time", "2s")
    assert "budget: 2s" in r.stderr and "done (max-time)" in r.stderr
    m = train_meta(tmp_path / "r")
    assert m["epochs"] is None and m["max_time"] == 2.0


def test_resume_with_a_new_budget_drops_the_recorded_ones(corpus, tmp_path):
    run = tmp_path / "r"
    r = train(corpus, "--out", run, *SMALL, "--epochs", "1")
    assert "budget: 1 epoch" in r.stderr
    done = train_meta(run)
    assert done["epoch"] == 1

    r = train("--resume", run, "--max-time", "1s")  # trains on past the recorded 1 epoch
    assert "budget: 1s" in r.stderr and "done (max-time)" in r.stderr
    m = train_meta(run)
    assert m["step"] > done["step"] and m["epochs"] is None and m["max_steps"] is None

    r = train("--resume", run, "--max-steps", str(m["step"] + 3))  # the recorded 1s is dropped too
    assert "done (max-steps)" in r.stderr and train_meta(run)["max_time"] is None

    r = train("--resume", run)  # nothing given: the recorded budget (3 more steps, now spent)
    assert f"budget: {m['step'] + 3:,} steps" in r.stderr


def test_a_run_stopped_before_its_first_step_names_only_what_it_saved(corpus, tmp_path):
    r = train(corpus, "--out", tmp_path / "r", "--max-time", "0.000001s")
    assert r.exit_code == 0, r.output
    assert "after 0 steps" in r.stderr and "latest.npz" in r.stderr and "best.npz" not in r.stderr  # (it said both)
    assert (tmp_path / "r" / "latest.npz").exists() and not (tmp_path / "r" / "best.npz").exists()
