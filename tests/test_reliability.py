"""Reliability: bad input is one line and writes nothing; kill -9, divergence, write errors and a
second writer never cost a checkpoint. (Fuzzed checkpoints: test_checkpoint; fuzzed text: test_corpus.)"""

import json
import os
import random
import resource
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL, invoke, popen_cli, run_cli

from lstmgen import checkpoint as ckpt_io
from lstmgen.errors import CheckpointError
from lstmgen.synthetic import prose

run, cli, popen = invoke, run_cli, popen_cli


@pytest.fixture(scope="module")
def corpus(write_prose) -> Path:
    return write_prose(20_000, seed=2)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    r = run("train", corpus, "--out", out, *SMALL, "--max-steps", "4", "--eval-every", "2")
    assert r.exit_code == 0, r.output
    return out


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.suffix == ".npz"}


def copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def leftovers(run_dir: Path) -> list[str]:
    return [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------- 1. bad input


@pytest.mark.parametrize("args, code, needle", [
    (["{mono}"], 1, "one distinct character"),
    (["{corpus}", "--val-frac", "1"], 2, "val-frac"),
    (["{corpus}", "--val-frac", "-0.1"], 2, "val-frac"),
    (["{corpus}", "--dropout", "1"], 2, "dropout"),
    (["{corpus}", "--dropout", "nan"], 2, "dropout"),
    (["{corpus}", "--batch-size", "0"], 2, "batch-size"),
    (["{corpus}", "--seq-len", "-3"], 2, "seq-len"),
    (["{corpus}", "--layers", "0"], 2, "layers"),
    (["{corpus}", "--embed", "0"], 2, "embed"),
    (["{corpus}", "--lr", "nan"], 2, "lr"),
    (["{corpus}", "--lr", "0"], 2, "lr"),
    (["{corpus}", "--weight-decay", "-1"], 2, "weight-decay"),
    (["{corpus}", "--grad-clip", "-1"], 2, "grad-clip"),
    (["{corpus}", "--optimizer", "lbfgs"], 2, "lbfgs"),
    (["{corpus}", "--lr-schedule", "linear"], 2, "linear"),
    (["{corpus}", "--dtype", "float16"], 2, "float16"),
    (["{corpus}", "--max-time", "0s"], 2, "max-time"),
    (["{corpus}", "--max-time", "10 parsecs"], 2, "duration"),
    (["{corpus}", "--eval-every", "0"], 2, "eval-every"),
    (["{corpus}", "--patience", "0"], 2, "patience"),
    (["{corpus}", "--out", "{corpus}/run"], 2, "run directory"),
    (["{corpus}", "--out", "/proc/lstmgen-nope/run"], 2, "run directory"),
    (["--resume", "{corpus}"], 2, "not a run"),
    (["--resume", "{nowhere}"], 2, "not a run"),
])
def test_bad_train_input_is_one_line_and_writes_nothing(args, code, needle, corpus, tmp_path):
    mono = tmp_path / "mono.txt"
    mono.write_text("a" * 5000)
    out = tmp_path / "run"
    argv = [a.format(corpus=corpus, mono=mono, nowhere=tmp_path / "nowhere") for a in args]
    if "--out" not in argv and "--resume" not in argv:
        argv += ["--out", str(out)]
    r = run("train", *SMALL, *argv)
    assert r.exit_code == code, (argv, r.output)
    assert needle in r.stderr, r.stderr
    assert "Traceback" not in r.output and len(r.stderr.strip().splitlines()) <= 2, r.stderr
    assert not out.exists() or not any(p.name != ".lock" for p in out.iterdir())


def _truncated(src: Path, dst: Path):
    dst.write_bytes(src.read_bytes()[: len(src.read_bytes()) // 2])


def _pickled(src: Path, dst: Path):
    d = dict(np.load(src, allow_pickle=False))
    d["decoder.bias"] = np.array([{"evil": 1}], dtype=object)
    np.savez(dst, **d)


def _foreign(src: Path, dst: Path):
    np.savez(dst, weights=np.zeros(3))


def _newer(src: Path, dst: Path):
    d = dict(np.load(src, allow_pickle=False))
    meta = json.loads(str(d["meta.json"]))
    meta["format_version"] = 99
    d["meta.json"] = np.array(json.dumps(meta))
    np.savez(dst, **d)


@pytest.mark.parametrize("make, needle", [(_truncated, "damaged or truncated"), (_pickled, "pickled"),
                                          (_foreign, "not a valid lstmgen checkpoint"), (_newer, "newer")])
@pytest.mark.parametrize("command", ["sample", "eval", "inspect", "resume"])
def test_bad_checkpoint_for_every_command(trained, corpus, tmp_path, make, needle, command):
    bad_run = tmp_path / "bad"
    bad_run.mkdir()
    make(trained / "latest.npz", bad_run / "latest.npz")
    argv = {"sample": ["sample", bad_run], "eval": ["eval", bad_run, corpus], "inspect": ["inspect", bad_run],
            "resume": ["train", "--resume", bad_run]}[command]
    r = run(*argv)
    assert r.exit_code == 1, r.output
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output


@pytest.mark.parametrize("argv, needle", [
    (["sample", "{run}", "--prime", "Ωmega"], "Ω"),
    (["eval", "{run}", "{latin1}"], "offset"),
    (["eval", "{run}", "{greek}"], "Ω"),
    (["inspect", "{run}", "--text", "Ωmega"], "Ω"),
    (["inspect", "{run}", "--file", "{latin1}"], "offset"),
])
def test_text_outside_the_vocabulary_is_named(trained, tmp_path, argv, needle):
    latin1, greek = tmp_path / "latin1.txt", tmp_path / "greek.txt"
    latin1.write_bytes("café au lait".encode("latin-1"))
    greek.write_text("the Ωmega point", encoding="utf-8")
    r = run(*[a.format(run=trained, latin1=latin1, greek=greek) for a in argv])
    assert r.exit_code == 1 and needle in r.stderr and "Traceback" not in r.output, r.output


# ---------------------------------------------------------------------- 2. interruption


def test_kill_9_at_any_moment_never_leaves_an_unreadable_checkpoint(corpus, tmp_path):
    """A run that saves latest.npz (and often best.npz) at every step, killed many times."""
    out = tmp_path / "run"
    rnd = random.Random(0)
    kills = 0
    for _ in range(12):
        args = ["train", "--resume", out] if (out / "latest.npz").exists() else ["train", corpus, "--out", out]
        p = popen(*args, *([] if args[1] == "--resume" else SMALL + ["--hidden", "48"]), "--eval-every", "1",
                  "--max-steps", "100000", "--epochs", "100000")
        time.sleep(0.8 + rnd.random() * 1.5)  # start-up, then somewhere in the stream of saves
        p.kill()
        p.wait(timeout=30)
        kills += p.returncode == -signal.SIGKILL
        for name in ("latest.npz", "best.npz"):
            if (out / name).exists():
                ckpt_io.load(out / name)  # raises if torn
    assert kills >= 10
    steps = ckpt_io.load(out / "latest.npz").meta["train"]["step"]
    assert steps > 0
    r = cli("train", "--resume", out, "--max-steps", steps + 3)  # the lock was not left stuck
    assert r.returncode == 0, r.stderr
    assert not leftovers(out)  # temporaries of killed saves were cleaned up


def test_sigint_during_a_long_validation_exits_quickly(tmp_path):
    big = tmp_path / "big.txt"
    big.write_text(prose(600_000, seed=4), encoding="utf-8")
    out = tmp_path / "run"
    p = popen("train", big, "--out", out, "--hidden", "128", "--layers", "2", "--val-frac", "0.9",
              "--eval-every", "1", "--batch-size", "4", "--seq-len", "16")
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "metrics.jsonl").exists():  # after the first validation
        time.sleep(0.1)
    time.sleep(0.5)  # in the second validation (each takes seconds)
    t0 = time.time()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert time.time() - t0 < 5, f"took {time.time() - t0:.1f} s to stop"
    assert ckpt_io.load(out / "latest.npz").meta["train"]["step"] >= 1 and "Traceback" not in err


# ---------------------------------------------------------------------- 4. divergence, 5. write errors


def test_divergence_stops_and_keeps_the_last_good_checkpoints(trained, tmp_path):
    run_dir = copy_run(trained, tmp_path / "run")
    before = snapshot(run_dir)
    metrics = (run_dir / "metrics.jsonl").read_bytes()
    # lr 1e30 wrecks the weights at the first step; whether float32 then overflows to inf or
    # saturates at ~1e30 nats depends on the CPU (AVX2 vs AVX-512): both are a diverged run
    r = run("train", "--resume", run_dir, "--lr", "1e30", "--max-steps", "40", "--eval-every", "1")
    assert r.exit_code == 1, r.output
    assert "diverged" in r.stderr and "lower learning rate" in r.stderr and "Traceback" not in r.output
    assert snapshot(run_dir) == before and not leftovers(run_dir)
    assert (run_dir / "metrics.jsonl").read_bytes() == metrics  # nothing at all written once diverged


def test_a_failed_write_keeps_the_previous_checkpoint(trained, tmp_path):
    """A real process whose files may not grow past half a checkpoint (RLIMIT_FSIZE: EFBIG)."""
    run_dir = copy_run(trained, tmp_path / "run")
    before = snapshot(run_dir)
    limit = len(before["latest.npz"]) // 2

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = cli("train", "--resume", run_dir, "--max-steps", "8", "--eval-every", "2", preexec_fn=small_files)
    assert r.returncode == 1, r.stderr
    assert "cannot write checkpoint" in r.stderr and "Traceback" not in r.stderr
    assert snapshot(run_dir) == before and not leftovers(run_dir)


def test_disk_full_is_one_clear_error(trained, tmp_path, monkeypatch):
    import errno

    path = tmp_path / "x.npz"
    path.write_bytes((trained / "latest.npz").read_bytes())
    good = path.read_bytes()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointError, match="No space left on device"):
        ckpt_io.save(path, ckpt_io.load(trained / "latest.npz"))
    assert path.read_bytes() == good and not leftovers(tmp_path)


# ---------------------------------------------------------------------- 6. one writer


def test_second_writer_is_refused_and_a_killed_run_does_not_block(corpus, tmp_path):
    out = tmp_path / "run"
    p = popen("train", corpus, "--out", out, *SMALL, "--eval-every", "5", "--epochs", "100000")
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (out / "latest.npz").exists():
            time.sleep(0.1)
        for argv in (["train", "--resume", out], ["train", corpus, "--out", out, *SMALL]):
            r = run(*argv)
            assert r.exit_code != 0 and "in use" in r.stderr and str(p.pid) in r.stderr, r.stderr
        assert p.poll() is None  # the first run was not disturbed
    finally:
        p.kill()
        p.wait(timeout=30)
    step = ckpt_io.load(out / "latest.npz").meta["train"]["step"]
    r = run("train", "--resume", out, "--max-steps", step + 2)
    assert r.exit_code == 0, r.output
