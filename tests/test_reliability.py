"""Reliability: bad input is one line and writes nothing; kill -9, divergence, write errors and a
second writer never cost a checkpoint; fuzzed checkpoints and text only ever raise our own errors."""

import io
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lstmgen import checkpoint as ckpt_io
from lstmgen.cli import app
from lstmgen.errors import CheckpointError, CorpusError, LstmgenError, VocabError
from lstmgen.generate import generate
from lstmgen.model import CharLM
from lstmgen.synthetic import prose
from lstmgen.text import Vocab, decode_bytes, read_text

runner = CliRunner()
SMALL = ["--hidden", "16", "--embed", "8", "--layers", "2", "--batch-size", "4", "--seq-len", "16"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "lstmgen", *map(str, args)], capture_output=True, text=True,
                          timeout=180, **kw)


def popen(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "lstmgen", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("corpus") / "tales.txt"
    p.write_text(prose(20_000, seed=2), encoding="utf-8")
    return p


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


# ---------------------------------------------------------------------- 7. fuzzing

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def good_bytes(trained) -> bytes:
    return (trained / "latest.npz").read_bytes()


def _load_and_use(tmp_path: Path, data: bytes) -> None:
    """Load mutated bytes; if it loads, the model must work (validation missed nothing)."""
    p = tmp_path / "fuzz.npz"
    p.write_bytes(data)
    try:
        ck = ckpt_io.load(p)
    except CheckpointError:
        return
    model = CharLM(ck.config, params=ck.params)
    text = "".join(generate(model, Vocab(ck.meta["vocab"]), 5, rng=np.random.default_rng(0)))
    assert len(text) == 5


@FUZZ
@given(cut=st.integers(min_value=0, max_value=10**6), flips=st.lists(st.tuples(st.integers(0, 10**6),
                                                                               st.integers(1, 255)), max_size=4))
def test_fuzz_truncated_and_flipped_checkpoints(good_bytes, tmp_path, cut, flips):
    data = bytearray(good_bytes[: cut % (len(good_bytes) + 1)] if cut % 3 == 0 else good_bytes)
    for pos, x in flips:
        if data:
            data[pos % len(data)] ^= x
    _load_and_use(tmp_path, bytes(data))


@pytest.mark.parametrize("old, new", [(b"(", b"|"), (b")", b"(")])
def test_damaged_array_header_is_one_checkpoint_error(good_bytes, tmp_path, old, new):
    """Found by the fuzz test above: NumPy parses an .npy header with ast.literal_eval, so a
    flipped header byte raised SyntaxError / tokenize.TokenError, not ValueError. (A large
    member: zipfile checks a member's CRC only once it has read to its end.)"""
    at = good_bytes.index(old, good_bytes.index(b"'shape': ", good_bytes.index(b"optim.exp_avg.npy")))
    _load_and_use(tmp_path, good_bytes[:at] + new + good_bytes[at + 1 :])


@pytest.mark.parametrize("offset, value", [(10, 99), (8, 0x20), (8, 0x01)])
def test_damaged_zip_flags_are_one_checkpoint_error(good_bytes, tmp_path, offset, value):
    """Found by the fuzz test above: a flipped compression method (NotImplementedError), the
    "compressed patched data" flag (NotImplementedError) or the encryption flag (RuntimeError) in
    the central directory's entry of a member (offsets from its PK\\x01\\x02 signature)."""
    data = bytearray(good_bytes)
    data[good_bytes.index(b"PK\x01\x02") + offset] = value
    _load_and_use(tmp_path, bytes(data))


def _arrays(good_bytes: bytes) -> dict:
    with np.load(io.BytesIO(good_bytes), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@FUZZ
@given(data=st.data())
def test_fuzz_edited_arrays_and_metadata(good_bytes, tmp_path, data):
    arrays = _arrays(good_bytes)
    meta = json.loads(str(arrays["meta.json"]))
    action = data.draw(st.sampled_from(["drop", "reshape", "retype", "meta", "vocab", "extra"]))
    key = data.draw(st.sampled_from(sorted(k for k in arrays if k != "meta.json")))
    if action == "drop":
        del arrays[key]
    elif action == "reshape":
        arrays[key] = np.resize(arrays[key], data.draw(st.lists(st.integers(0, 40), min_size=0, max_size=3)))
    elif action == "retype":
        arrays[key] = arrays[key].astype(data.draw(st.sampled_from(["float64", "float16", "int32", "U3", "bool"])))
    elif action == "meta":
        section = data.draw(st.sampled_from(["model", "train", "corpus", "format", "format_version", "vocab"]))
        value = data.draw(st.one_of(st.none(), st.integers(-5, 10**9), st.floats(allow_nan=True),
                                    st.text(max_size=5), st.lists(st.integers(), max_size=2)))
        if section == "model" and isinstance(meta.get("model"), dict):
            meta["model"][data.draw(st.sampled_from(sorted(meta["model"])))] = value
        else:
            meta[section] = value
    elif action == "vocab":
        meta["vocab"] = data.draw(st.text(min_size=0, max_size=40))
    else:
        arrays[data.draw(st.text(min_size=1, max_size=8))] = np.zeros(2)
    arrays["meta.json"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    try:
        np.savez(buf, **arrays)
    except (ValueError, zipfile.LargeZipFile):
        return
    _load_and_use(tmp_path, buf.getvalue())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_corpus_reader_bytes(data):
    try:
        text = decode_bytes(data)
    except CorpusError:
        return
    assert not text.startswith("\ufeff")
    assert text == data.decode("utf-8").removeprefix("\ufeff")


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_corpus_files(tmp_path, data):
    p = tmp_path / "c.txt"
    p.write_bytes(data)
    try:
        read_text(p)
    except CorpusError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=60), st.text(max_size=60))
def test_fuzz_vocabulary(corpus_text, other):
    v = Vocab.from_text(corpus_text)
    assert v.decode(v.encode(corpus_text)) == corpus_text
    try:
        assert v.decode(v.encode(other)) == other
    except VocabError as e:
        assert isinstance(e, LstmgenError)
        assert set(other) - set(corpus_text)
