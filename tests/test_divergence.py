"""Divergence by magnitude: the rule fires on wrecked runs on any CPU and never on healthy ones.

A loss is a diverged run when it is non-finite or far above ln V (see train.divergence_limit).
These tests do not depend on where float32 overflows: they check the rule on numbers, and
healthy training (first steps, heavy dropout, a tiny corpus, a CJK vocabulary) stays far below it.
"""

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstmgen.cli import app
from lstmgen.synthetic import cjk, prose
from lstmgen.training import divergence, divergence_limit

runner = CliRunner()


def test_the_rule_on_numbers():
    for V in (2, 65, 5000):
        limit = divergence_limit(V)
        assert limit > 10 * math.log(V)  # far above what a model that knows nothing scores
        assert divergence(math.log(V), V) is None
        assert divergence(0.0, V) is None
        assert divergence(limit * 0.99, V) is None
        assert "far above ln V" in divergence(limit * 1.01, V)
        assert "far above ln V" in divergence(4.8e30, V)  # float32 saturated (AVX-512)
        assert "not finite" in divergence(math.inf, V)  # float32 overflowed (AVX2)
        assert "not finite" in divergence(math.nan, V)


def _max_losses(run_dir: Path) -> tuple[float, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = max(r["train_loss"] for r in rows if r["train_loss"] is not None)
    vals = [r["val_loss"] for r in rows if r["val_loss"] is not None]
    return train, max(vals) if vals else 0.0


CASES = {
    # first steps at the default (high-ish) learning rate, no warm-up: the largest early spikes
    "first-steps": (prose(20_000, seed=3), ["--lr", "0.02", "--warmup", "0", "--max-steps", "30"]),
    "high-dropout": (prose(20_000, seed=4), ["--dropout", "0.9", "--max-steps", "20"]),
    "tiny-corpus": ("ab\nba\n" * 8, ["--max-steps", "20", "--val-frac", "0.2", "--seq-len", "4"]),
    "cjk": (cjk(12_000, n_distinct=1500, seed=5), ["--max-steps", "12", "--lr", "0.01"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_healthy_runs_stay_far_below_the_limit(case, tmp_path):
    text, extra = CASES[case]
    path = tmp_path / f"{case}.txt"
    path.write_text(text, encoding="utf-8")
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", str(path), "--out", str(out), "--hidden", "32", "--embed", "16",
                            "--batch-size", "4", "--eval-every", "2", *extra])
    assert r.exit_code == 0, r.output
    V = len(set(text))
    train, val = _max_losses(out)
    assert max(train, val) < divergence_limit(V) / 3, (train, val, divergence_limit(V))
