"""Edges of the command line found by trying to break it: each ends in one clear line and the right
exit code, or does what a user would expect (the hardening issue's items 5-15)."""

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lstmgen import generate as gen
from lstmgen.cli import app
from lstmgen.cli.base import load_model
from lstmgen.synthetic import prose
from lstmgen.training import TrainOptions, suggested_lr

runner = CliRunner()
TINY = ["--hidden", "8", "--embed", "4", "--batch-size", "4", "--seq-len", "8", "--workers", "1"]


def run(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


def one_error_line(r, code: int, *words: str) -> str:
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def two_files(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A run trained on two files, a.txt then b.txt (the held-out tail is the end of b.txt)."""
    d = tmp_path_factory.mktemp("two")
    a, b = d / "a.txt", d / "b.txt"
    a.write_text(prose(4000, seed=1), encoding="utf-8")
    b.write_text(prose(3000, seed=2), encoding="utf-8")
    r = run("train", a, b, "--out", d / "run", *TINY, "--max-steps", "6", "--eval-every", "3", "--dtype", "float64")
    assert r.exit_code == 0, r.output
    assert "training on a.txt + b.txt:" in r.stderr
    return a, b, d / "run"


# ---------------------------------------------------------------- 5: --seed -1
@pytest.mark.parametrize("cmd", [["sample", "{run}"], ["train", "{a}", "--max-steps", "1"], ["fill", "{run}", "a_"],
                                 ["gradcheck"]])
def test_a_negative_seed_is_a_usage_error_not_a_traceback(two_files, tmp_path, cmd):
    a, _, run_dir = two_files
    args = [c.format(run=run_dir, a=a) for c in cmd] + ["--seed", "-1"]
    if cmd[0] == "train":
        args += ["--out", str(tmp_path / "r")]
    one_error_line(run(*args), 2, "--seed", "-1")


# ---------------------------------------------------------------- 6: several files, a directory
def test_inspect_reads_the_held_out_tail_of_the_last_file(two_files):
    a, b, run_dir = two_files
    r = run("inspect", run_dir, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["source"].startswith("the validation tail of a.txt + b.txt (from character ")
    assert doc["source"].endswith(", in b.txt)")
    whole = a.read_text(encoding="utf-8") + b.read_text(encoding="utf-8")  # each ends with a newline
    start = int(re.search(r"from character ([\d,]+)", doc["source"]).group(1).replace(",", ""))
    assert len(whole) - start <= round(len(whole) * 0.05)  # inside the held-out 5 %
    assert whole[start:].startswith(doc["text"]) and whole[start - 1] == "\n"
    r = run("runs", run_dir.parent, "--json")
    assert json.loads(r.stdout)[0]["corpus"] == "a.txt + b.txt"


def test_inspect_finds_a_directory_corpus(tmp_path):
    d = tmp_path / "poems"
    d.mkdir()
    (d / "1.txt").write_text(prose(3000, seed=3), encoding="utf-8")
    (d / "2.txt").write_text(prose(3000, seed=4), encoding="utf-8")
    r = run("train", d, "--out", tmp_path / "run", *TINY, "--max-steps", "2")
    assert r.exit_code == 0, r.output
    assert "training on poems/:" in r.stderr
    doc = json.loads(run("inspect", tmp_path / "run", "--json").stdout)
    assert doc["source"].startswith("the validation tail of poems/ (") and "in 2.txt" in doc["source"]
    assert (d / "2.txt").read_text(encoding="utf-8").find(doc["text"][:40]) >= 0


# ---------------------------------------------------------------- 7: many samples, bounded memory
def test_samples_are_generated_in_bounded_batches_whose_rows_do_not_depend_on_the_batching(two_files,
                                                                                          monkeypatch):
    _, _, run_dir = two_files
    model, vocab, _ = load_model(run_dir)
    opts = dict(prime="The ", temperature=1.0, stop=None)
    whole = list(gen.generate_many(model, vocab, 30, 7, seed=11, **opts))
    batched = [[] for _ in range(7)]
    for rows, steps in gen.sample_batches(model, vocab, 30, 7, batch=3, seed=11, **opts):
        assert len(rows) <= 3
        for chars in steps:
            for r, ch in zip(rows, chars):
                batched[r].append(ch)
    assert ["".join(c[r] for c in whole) for r in range(7)] == ["".join(b) for b in batched]
    seen = []
    real = gen.generate_many
    monkeypatch.setattr(gen, "generate_many", lambda *a, **k: seen.append(len(k["rows"])) or real(*a, **k))
    r = run("sample", run_dir, "--num-samples", "600", "--length", "3", "--seed", "1")
    assert r.exit_code == 0, r.output
    assert seen == [256, 256, 88] and r.stdout.count("\n\n") == 599


def test_the_noise_block_is_no_larger_than_the_draws_to_come():
    s = gen.BatchSampler([np.random.default_rng(k) for k in range(256)], 65, steps=20)
    assert s.block == 20


# ---------------------------------------------------------------- 8, 9, 11, 12
def test_a_start_past_the_text_is_a_usage_error(two_files):
    one_error_line(run("inspect", two_files[2], "--text", "The cat", "--start", "99999"), 2, "--start",
                   "past the end", "7 characters")


def test_resuming_with_another_file_names_it(two_files, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(prose(2000, seed=9), encoding="utf-8")
    def contents():  # (.lock records who last held the run)
        return {p.name: p.read_bytes() for p in two_files[2].iterdir() if p.name != ".lock"}

    before = contents()
    line = one_error_line(run("train", other, "--resume", two_files[2]), 1, "other.txt",
                          "is not the corpus this run was trained on (a.txt + b.txt)")
    assert "changed" not in line
    assert before == contents()


def test_an_infinite_temperature_is_refused_as_not_finite(two_files):
    one_error_line(run("sample", two_files[2], "--temperature", "inf"), 2, "--temperature", "finite")


def test_after_diverging_far_above_the_default_the_hint_is_the_default_rate(tmp_path):
    assert suggested_lr(1e6) == TrainOptions.lr and suggested_lr(0.008) == 0.002
    corpus = tmp_path / "c.txt"
    corpus.write_text(prose(3000, seed=5), encoding="utf-8")
    r = run("train", corpus, "--out", tmp_path / "r", *TINY, "--lr", "1e6", "--warmup", "0", "--max-steps", "50",
            "--optimizer", "sgd")
    assert r.exit_code == 1 and "Traceback" not in r.output
    line = r.stderr.strip().splitlines()[-1]  # after the start-up line
    assert "diverged" in line and line.endswith(f"(--lr {TrainOptions.lr:g})")


def test_a_named_pipe_and_a_symlink_loop_are_refused_by_what_they_are(tmp_path):
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    try:  # a real process with a time limit: reading a pipe that no one writes would hang forever
        p = subprocess.run([sys.executable, "-m", "lstmgen", "train", str(fifo), "--out", str(tmp_path / "r")],
                           capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("a named pipe as corpus hangs")
    assert p.returncode == 1 and "named pipe" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    loop = tmp_path / "loop.txt"
    loop.symlink_to(loop)
    one_error_line(run("train", loop, "--out", tmp_path / "r"), 1, "loop of symbolic links")
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- 10: the bar says what metrics.jsonl says
def test_the_progress_line_shows_the_logged_mean_train_loss(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(prose(6000, seed=6), encoding="utf-8")
    r = run("train", corpus, "--out", tmp_path / "r", *TINY, "--max-steps", "12", "--eval-every", "6",
            "--dtype", "float64")
    assert r.exit_code == 0, r.output
    shown = {int(s): float(v) for s, v in re.findall(r"step (\d+) epoch \d+: train ([\d.]+)", r.stderr)}
    logged = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert set(shown) == {6, 12}
    for rec in logged:
        if rec["step"] in shown:
            assert shown[rec["step"]] == pytest.approx(rec["train_loss"], abs=6e-5)
    steps = [rec["step"] for rec in logged]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # one line per step that ends a span


# ---------------------------------------------------------------- 13, 14: pipes, terminals, files
def test_inspect_into_a_closed_pipe_exits_0(two_files):
    p = subprocess.run(f"{sys.executable} -m lstmgen inspect '{two_files[2]}' | head -1", shell=True,
                       capture_output=True, text=True, executable="/bin/bash",
                       env={**os.environ, "PIPESTATUS_CHECK": "1"})
    assert p.stdout.strip()
    p = subprocess.run(["bash", "-c", f"{sys.executable} -m lstmgen inspect '{two_files[2]}' | head -1 >/dev/null; "
                        "echo ${PIPESTATUS[0]}"], capture_output=True, text=True)
    assert p.stdout.strip() == "0", p.stderr
    assert "Traceback" not in p.stderr


def test_sample_ends_with_a_newline_on_a_terminal_only(two_files):
    args = [sys.executable, "-m", "lstmgen", "sample", str(two_files[2]), "--length", "20", "--seed", "3",
            "--prime", "The "]
    piped = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    assert piped.startswith("The ") and len(piped) == 24  # exactly the text
    main, sub = pty.openpty()
    subprocess.run(args, stdout=sub, stderr=subprocess.DEVNULL, check=True)
    os.close(sub)
    got = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        got += chunk
    os.close(main)
    text = got.decode().replace("\r\n", "\n")  # the terminal's line discipline
    assert text == piped + "\n"


def test_checkpoints_are_written_with_the_mode_of_every_other_file(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(prose(3000, seed=7), encoding="utf-8")
    old = os.umask(0o022)
    try:
        r = run("train", corpus, "--out", tmp_path / "r", *TINY, "--max-steps", "2")
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "r").iterdir()}
    assert modes["latest.npz"] == modes["best.npz"] == modes["metrics.jsonl"] == 0o644


def test_runs_in_80_columns_shows_the_corpus_whole(two_files):
    r = run("runs", two_files[2].parent, env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert "a.txt + b.txt" in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 80


# ---------------------------------------------------------------- 15: help and the bundled corpora
@pytest.mark.parametrize("cmd", [[], ["train"], ["sample"], ["eval"], ["fill"], ["inspect"], ["plot"], ["runs"],
                                 ["gradcheck"], ["memory"], ["info"]])
def test_help_names_values_not_python_types(cmd):
    r = run(*cmd, "--help", env={"COLUMNS": "120"})
    assert r.exit_code == 0
    for bad in ("<bool>", "<list", "<int", "<float", "<str>", "<path>", "[Path]"):
        assert bad not in r.stdout, (cmd, bad)


def test_every_command_has_a_one_line_summary():
    r = run("--help", env={"COLUMNS": "120"})
    rows = [line for line in r.stdout.splitlines() if line.startswith("│ ")]
    names = [row.split()[1] for row in rows if len(row.split()) > 1 and not row.split()[1].startswith("-")]
    assert names == ["train", "sample", "eval", "fill", "inspect", "plot", "runs", "gradcheck", "memory", "info"]


def test_bundled_corpora_by_name(tmp_path):
    r = run("train", "@structured", "--out", tmp_path / "s", *TINY, "--max-steps", "1")
    assert r.exit_code == 0, r.output
    assert "training on structured.txt:" in r.stderr
    one_error_line(run("eval", tmp_path / "s", "@nope"), 1, "@nope", "@default, @structured")
    r = run("eval", tmp_path / "s", "@structured", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["chars"] > 100_000
