"""The command line end to end: CliRunner and real subprocesses, on a tiny corpus in seconds."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL
from typer.testing import CliRunner

from lstmgen import checkpoint as ckpt_io
from lstmgen.cli import app
from lstmgen.optim import lr_at

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(write_prose) -> Path:
    return write_prose(6000, seed=1)


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def train_run(corpus, out, *extra):
    r = run("train", corpus, "--out", out, *SMALL, "--eval-every", "5", "--seed", "3", *extra)
    assert r.exit_code == 0, r.output
    return r


def test_train_sample_eval(corpus, tmp_path):
    out = tmp_path / "run"
    train_run(corpus, out, "--max-steps", "12", "--dtype", "float64")
    assert {p.name for p in out.iterdir()} >= {"latest.npz", "best.npz", "metrics.jsonl"}
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert recs and recs[-1]["step"] == 12
    for r in recs:
        assert {"step", "epoch", "train_loss", "val_loss", "lr", "chars_per_sec", "elapsed_s"} <= set(r)
    assert any(r["val_loss"] is not None for r in recs)

    ck = ckpt_io.load(out / "latest.npz")
    assert ck.meta["train"]["step"] == 12 and ck.meta["format"] == "lstmgen-checkpoint"
    assert ck.meta["vocab"] == "".join(sorted(set(corpus.read_text(encoding="utf-8"))))
    with np.load(out / "latest.npz", allow_pickle=False) as z:
        assert "rnn.weight_ih_l1" in z.files and "optim.exp_avg" in z.files

    s1 = run("sample", out, "--length", "50", "--seed", "7", "--prime", "The ")
    s2 = run("sample", out, "--length", "50", "--seed", "7", "--prime", "The ")
    assert s1.exit_code == 0, s1.output
    assert s1.stdout == s2.stdout and s1.stdout.startswith("The ") and len(s1.stdout) == 54
    greedy = run("sample", out / "best.npz", "--length", "30", "--temperature", "0")
    assert greedy.exit_code == 0 and len(greedy.stdout) == 30

    r = run("eval", out, corpus, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["chars"] == len(corpus.read_text(encoding="utf-8"))
    assert res["bpc"] == pytest.approx(res["loss"] / math.log(2))
    assert res["perplexity"] == pytest.approx(math.exp(res["loss"]))


def test_eval_is_the_contract_definition(corpus, tmp_path):
    """eval = mean over t=1..N−1 of −ln p(x_t | x_<t), one sequence from a zero state."""
    out = tmp_path / "run"
    train_run(corpus, out, "--max-steps", "5", "--dtype", "float64")
    text = "Ada walked to the market.\n\"Hello,\" said Bram."
    f = tmp_path / "t.txt"
    f.write_text(text, encoding="utf-8")
    got = json.loads(run("eval", out / "latest.npz", f, "--json").stdout)
    ck = ckpt_io.load(out / "latest.npz")
    from lstmgen.model import CharLM

    m = CharLM(ck.config, params=ck.params)
    st = m.stepper(1)
    vocab = ck.meta["vocab"]
    nll = 0.0
    for a, b in zip(text, text[1:]):
        logits = st.step(np.array([vocab.index(a)]))[0].astype(np.float64)
        nll += np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[vocab.index(b)]
    assert got["loss"] == pytest.approx(nll / (len(text) - 1), rel=1e-9)
    assert got["chars"] == len(text)


def test_resume_equals_uninterrupted(corpus, tmp_path):
    """20 steps, then --resume to 40: bit-identical float64 weights and optimizer state, same metrics."""
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--dtype", "float64", "--dropout", "0.2", "--lr-schedule", "cosine"]
    train_run(corpus, a, "--max-steps", "40", *common)
    train_run(corpus, b, "--max-steps", "20", *common)
    r = run("train", "--resume", b, "--max-steps", "40")
    assert r.exit_code == 0, r.output
    ca, cb = ckpt_io.load(a / "latest.npz"), ckpt_io.load(b / "latest.npz")
    for k in ca.params:
        np.testing.assert_array_equal(ca.params[k], cb.params[k], err_msg=k)
    for k in ca.optim:
        np.testing.assert_array_equal(ca.optim[k], cb.optim[k], err_msg=k)
    assert ca.meta["train"]["step"] == cb.meta["train"]["step"] == 40
    ma = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    key = lambda r: (r["step"], r["train_loss"], r["val_loss"])  # noqa: E731
    assert [key(r) for r in ma] == [key(r) for r in mb]


def test_max_time_cosine_ends_with_the_time_budget(corpus, tmp_path, monkeypatch):
    """With --max-time the cosine decay follows the clock: half the budget gone → halfway down,
    all gone → min lr; a resumed run continues from where the schedule stood."""
    from lstmgen import training as train_mod
    from lstmgen.training import loop as train_loop

    clock = [1000.0]
    monkeypatch.setattr(train_loop.time, "monotonic", lambda: clock[0])
    opts = train_mod.TrainOptions(hidden=8, embed=4, layers=1, batch_size=2, seq_len=8, warmup=0,
                                  epochs=1000, max_time=100.0, eval_every=10**6)
    tr = train_mod.new_trainer(corpus, tmp_path / "run", opts)
    tr.t_start = clock[0]
    assert tr.lr() == pytest.approx(opts.lr)  # epochs far away, no time gone
    clock[0] += 50
    assert tr.lr() == pytest.approx(opts.lr * 0.55)
    clock[0] += 50
    assert tr.lr() == pytest.approx(opts.lr * 0.1)
    clock[0] -= 75  # 25 % of the budget: progress 0.25 is what a checkpoint now records
    assert tr.meta()["train"]["schedule_progress"] == pytest.approx(0.25)
    tr.save("latest.npz")
    tr.close()
    resumed = train_mod.resume_trainer(tmp_path / "run", None, {"max_time": 10.0})
    resumed.t_start = clock[0]
    assert resumed.lr() == pytest.approx(lr_at(0, opts.lr, "cosine", progress=0.25))
    clock[0] += 10  # the resumed budget maps the rest of the schedule onto its 10 s
    assert resumed.lr() == pytest.approx(opts.lr * 0.1)
    resumed.close()


def test_out_never_overwrites_a_run(corpus, tmp_path):
    out = tmp_path / "run"
    train_run(corpus, out, "--max-steps", "2")
    r = run("train", corpus, "--out", out, *SMALL, "--max-steps", "2")
    assert r.exit_code == 2 and "already holds a run" in r.stderr


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["train", "{missing}"], 1, "not found"),
        (["train", "{empty}"], 1, "empty"),
        (["train", "{binary}"], 1, "offset 3"),
        (["train", "{dir}"], 1, "bin.txt is not valid UTF-8"),  # a directory: its *.txt files
        (["train", "{corpus}", "--dropout", "1.5"], 2, "dropout"),
        (["train", "{corpus}", "--hidden", "0"], 2, "hidden"),
        (["train", "{corpus}", "--cell", "transformer"], 2, "transformer"),
        (["train", "{corpus}", "--max-time", "soon"], 2, "duration"),
        (["train", "{corpus}", "--lr", "-1"], 2, "lr"),
        (["train", "--resume", "{dir}"], 2, "not a run"),
        (["sample", "{missing}"], 1, "not found"),
        (["sample", "{garbage}"], 1, "not a valid checkpoint"),
        (["sample", "{ckpt}", "--prime", "Zebra€"], 1, "€"),
        (["sample", "{ckpt}", "--top-p", "1.5"], 2, "top-p"),
        (["eval", "{ckpt}", "{binary}"], 1, "UTF-8"),
        (["eval", "{ckpt}", "{euro}"], 1, "€"),
    ],
)
def test_errors_are_one_line_with_exit_code(args, code, needle, corpus, tmp_path):
    paths = {
        "missing": tmp_path / "nope.txt", "empty": tmp_path / "empty.txt", "binary": tmp_path / "bin.txt",
        "dir": tmp_path, "corpus": corpus, "garbage": tmp_path / "garbage.npz", "ckpt": tmp_path / "run",
        "euro": tmp_path / "euro.txt",
    }
    paths["empty"].write_text("")
    paths["binary"].write_bytes(b"abc\xff\xfedef")
    paths["garbage"].write_bytes(os.urandom(300))
    paths["euro"].write_text("cost 5€", encoding="utf-8")
    if "{ckpt}" in args:
        train_run(corpus, paths["ckpt"], "--max-steps", "2")
    argv = [a.format(**paths) for a in args]
    r = run(*argv)
    assert r.exit_code == code, (argv, r.output)
    assert needle in r.stderr, r.stderr
    assert "Traceback" not in r.output
    if code == 1:
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_unicode_corpus(tmp_path):
    p = tmp_path / "zh.txt"
    p.write_text("\ufeff" + "春眠不觉晓，处处闻啼鸟。🌸夜来风雨声，花落知多少。\n" * 30, encoding="utf-8")
    out = tmp_path / "run"
    r = run("train", p, "--out", out, *SMALL, "--max-steps", "5")
    assert r.exit_code == 0, r.output
    assert "\ufeff" not in ckpt_io.load(out / "latest.npz").meta["vocab"]
    s = run("sample", out, "--prime", "春眠", "--length", "20", "--seed", "1")
    assert s.exit_code == 0 and s.stdout.startswith("春眠") and len(s.stdout) == 22


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "lstmgen", *map(str, args)], capture_output=True,
                          text=True, timeout=120, **kw)


def test_subprocess_version_and_sample(corpus, tmp_path):
    r = _cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("lstmgen ")
    out = tmp_path / "run"
    r = _cli("train", corpus, "--out", out, *SMALL, "--max-steps", "6", "--eval-every", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""  # the product of train is the run directory; stdout stays clean
    s = _cli("sample", out, "--length", "40", "--seed", "5", "--num-samples", "2")
    assert s.returncode == 0 and s.stdout.count("\n\n") >= 1
    bad = _cli("sample", tmp_path / "nope")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_latest_and_exits(signum, code, corpus, tmp_path):
    """A real process: the signal during training saves latest.npz, says how to resume, exits 130/143."""
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "lstmgen", "train", str(corpus), "--out", str(out), *SMALL,
                          "--eval-every", "100000", "--epochs", "100000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and p.poll() is None and not out.exists():
        time.sleep(0.3)
    time.sleep(1.0)  # let it train a few steps
    p.send_signal(signum)
    _, stderr = p.communicate(timeout=60)
    assert p.returncode == code, stderr
    ck = ckpt_io.load(out / "latest.npz")
    assert ck.meta["train"]["step"] > 0
    assert "resume" in stderr and "Traceback" not in stderr


def test_sampling_filters(corpus, tmp_path):
    out = tmp_path / "run"
    train_run(corpus, out, "--max-steps", "8")
    greedy = run("sample", out, "--length", "40", "--temperature", "0", "--prime", "A").stdout
    assert run("sample", out, "--length", "40", "--top-k", "1", "--seed", "1", "--prime", "A").stdout == greedy
    assert run("sample", out, "--length", "40", "--top-p", "1e-9", "--seed", "2", "--prime", "A").stdout == greedy
    stopped = run("sample", out, "--length", "400", "--seed", "3", "--stop", "e", "--prime", "A").stdout
    assert stopped.endswith("e") and stopped.count("e") == 1
    different = {run("sample", out, "--length", "40", "--seed", str(s)).stdout for s in range(4)}
    assert len(different) > 1


def test_patience_init_from_and_sample_every(corpus, tmp_path):
    out = tmp_path / "run"
    r = train_run(corpus, out, "--max-steps", "400", "--eval-every", "1", "--patience", "2", "--lr", "1e-9",
                  "--lr-schedule", "constant", "--warmup", "0", "--sample-every", "2")
    assert "patience" in r.stderr and "sample at step 2" in r.stderr
    assert ckpt_io.load(out / "latest.npz").meta["train"]["step"] < 400
    ft = tmp_path / "ft"
    r = run("train", corpus, "--out", ft, "--init-from", out / "best.npz", "--max-steps", "2", "--batch-size", "4",
            "--seq-len", "16")
    assert r.exit_code == 0, r.output
    a, b = ckpt_io.load(out / "best.npz"), ckpt_io.load(ft / "latest.npz")
    assert a.config.hidden == b.config.hidden == 16 and b.meta["train"]["step"] == 2
    assert "t" in b.optim and int(b.optim["t"]) == 2  # a fresh optimizer


def test_small_corpus_shrinks_batch_with_warning(tmp_path):
    p = tmp_path / "tiny.txt"
    p.write_text("abcabcabd" * 5, encoding="utf-8")
    r = run("train", p, "--out", tmp_path / "run", "--max-steps", "3", "--hidden", "8", "--embed", "4")
    assert r.exit_code == 0, r.output
    assert "warning:" in r.stderr and "batch size" in r.stderr


def test_threads_option_sets_the_blas_thread_count(corpus, tmp_path):
    from lstmgen.threads import get_threads, set_threads

    before = get_threads()
    if before is None:
        pytest.skip("this NumPy's BLAS cannot be asked for its thread count")
    try:
        out = tmp_path / "run"
        train_run(corpus, out, "--max-steps", "2", "--threads", "1")
        assert get_threads() == 1
        assert run("sample", out, "--length", "5", "--threads", "2").exit_code == 0
        assert get_threads() == 2
    finally:
        set_threads(before)


def test_direction_is_recorded_in_the_checkpoint_and_eval(tmp_path):
    import numpy as np

    corpus = tmp_path / "t.txt"
    corpus.write_text("abc abd abe\n" * 50, encoding="utf-8")
    r = runner.invoke(app, ["train", str(corpus), "--out", str(tmp_path / "r"), "--hidden", "8", "--embed", "4",
                            "--max-steps", "2", "--batch-size", "2", "--seq-len", "8", "--workers", "1"])
    assert r.exit_code == 0, r.output
    with np.load(tmp_path / "r" / "latest.npz") as z:
        assert json.loads(str(z["meta.json"]))["model"]["direction"] == "fwd"
    r = runner.invoke(app, ["eval", str(tmp_path / "r"), str(corpus), "--json"])
    assert json.loads(r.stdout)["direction"] == "fwd"
    r = runner.invoke(app, ["train", str(corpus), "--out", str(tmp_path / "b"), "--direction", "sideways"])
    assert r.exit_code == 2 and "--direction" in r.stderr and not (tmp_path / "b").exists()
