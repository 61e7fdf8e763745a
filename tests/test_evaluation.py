"""Validation (``lstmgen.training.evaluation``): what each validation reads — the whole held-out tail,
or a bounded sample of it (--val-chars) that is the same every time — and the divergence limit."""

import json
import re

import numpy as np
import pytest
from conftest import invoke

from lstmgen import checkpoint as ckpt_io
from lstmgen.model import CharLM, ModelConfig
from lstmgen.training import TrainOptions, new_trainer
from lstmgen.training.evaluation import validation_rows

TINY = ["--hidden", "8", "--embed", "4", "--batch-size", "4", "--seq-len", "8", "--workers", "1"]


@pytest.mark.parametrize("direction", ["fwd", "bi"])
def test_a_bounded_sample_is_evenly_spaced_prefixes_of_the_whole_tails_rows(direction):
    net = CharLM(ModelConfig(vocab_size=50, direction=direction, hidden=4, embed=3, layers=1)).network
    ids = np.random.default_rng(0).integers(0, 50, 10_001)
    whole_x, whole_y = validation_rows(net, ids, streams=8, chunk=16, limit=0)
    np.testing.assert_array_equal(whole_x, net.eval_rows(ids, 8, 16)[0])  # limit 0: the whole tail
    x, y = validation_rows(net, ids, streams=8, chunk=16, limit=1000)
    assert x.shape == (8, 125) and x.size <= 1000
    np.testing.assert_array_equal(x, whole_x[:, :125])  # row r starts where the tail's r-th eighth starts
    np.testing.assert_array_equal(y, whole_y[:, :125])
    again = validation_rows(net, ids, streams=8, chunk=16, limit=1000)
    assert all(np.array_equal(a, b) for a, b in zip((x, y), again))
    big_x, _ = validation_rows(net, ids, streams=8, chunk=16, limit=10**9)  # more than the tail: all of it
    np.testing.assert_array_equal(big_x, whole_x)


def test_the_trainer_validates_on_the_sample_and_the_start_up_line_says_so(write_prose, tmp_path):
    corpus = write_prose(60_000, seed=4)
    opts = TrainOptions(hidden=8, embed=4, layers=1, batch_size=4, seq_len=8, val_frac=0.2, val_chars=2000,
                        dtype="float64", workers=1)
    tr = new_trainer(corpus, tmp_path / "run", opts)
    try:
        x, y = tr.val_rows
        assert x.size == 2000 and len(tr.val_ids) > 10_000
        sums = tr.model.sum_losses(x, y, chunk=tr.T)
        assert tr.evaluate() == pytest.approx(sums[0] / sums[1], rel=1e-12)
    finally:
        tr.close()
    r = invoke("train", corpus, "--out", tmp_path / "cli", *TINY, "--max-steps", "2", "--val-frac", "0.2",
               "--val-chars", "2000")
    assert r.exit_code == 0, r.output
    said = r"validation: 2,000 of 12,0\d\d held-out chars, the same each time \(--val-chars 0: all\)"
    assert re.search(said, r.stderr)
    r = invoke("train", corpus, "--out", tmp_path / "all", *TINY, "--max-steps", "2", "--val-chars", "0")
    assert r.exit_code == 0 and re.search(r"validation: all 3,0\d\d held-out chars \|", r.stderr)


def test_the_sample_is_fixed_for_the_life_of_a_run_and_older_runs_read_their_whole_tail(write_prose, tmp_path):
    corpus = write_prose(20_000, seed=5)
    run = tmp_path / "run"
    assert invoke("train", corpus, "--out", run, *TINY, "--max-steps", "2", "--val-chars", "500").exit_code == 0
    r = invoke("train", "--resume", run, "--max-steps", "3", "--val-chars", "600")
    assert r.exit_code == 2 and "--val-chars cannot change when resuming (the run uses 500)" in r.stderr
    ck = ckpt_io.load(run / "latest.npz")  # a run written before --val-chars existed
    del ck.meta["train"]["val_chars"]
    ckpt_io.save(run / "latest.npz", ck)
    r = invoke("train", "--resume", run, "--max-steps", "3")
    assert r.exit_code == 0, r.output
    assert re.search(r"validation: all 1,0\d\d held-out chars \|", r.stderr)
    assert ckpt_io.load(run / "latest.npz").meta["train"]["val_chars"] == 0  # all of it, as before, from now on
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 3


def test_a_limit_below_the_row_count_reads_that_many_characters():
    net = CharLM(ModelConfig(vocab_size=50, hidden=4, embed=3, layers=1)).network
    ids = np.random.default_rng(1).integers(0, 50, 5_001)
    for limit in (1, 3, 7, 8, 9):
        x, y = validation_rows(net, ids, streams=8, chunk=16, limit=limit)
        assert 0 < x.size <= limit and x.shape == y.shape
