"""Data-parallel workers: the same math whatever N, exact resume, and faults as real processes.

Runs go through the real CLI as subprocesses (the workers are forked processes). Comparisons
across worker counts are in float64 with a tolerance (the sums are added in another order);
comparisons at the same count are exact (same code, same order, same machine).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import popen_cli, run_cli

TINY = ["--hidden", "24", "--embed", "8", "--layers", "2", "--batch-size", "8", "--seq-len", "20",
        "--dropout", "0.3", "--dtype", "float64", "--lr-schedule", "constant", "--eval-every", "5"]


cli = run_cli


def popen(*args):
    return popen_cli(*args, start_new_session=True)


@pytest.fixture(scope="module")
def corpus(write_prose) -> Path:
    return write_prose(30_000, seed=7)


def train(corpus, out, *extra):
    r = cli("train", corpus, "--out", out, *TINY, *extra)
    assert r.returncode == 0, r.stderr
    return r


def losses(run: Path) -> list[tuple[int, float, float | None]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_loss"], r["val_loss"]) for r in rows]


def weights(run: Path, name="latest.npz") -> dict[str, np.ndarray]:
    with np.load(run / name) as z:
        return {k: z[k] for k in z.files if not k.startswith("meta")}


def meta(run: Path) -> dict:
    with np.load(run / "latest.npz") as z:
        return json.loads(str(z["meta.json"]))


def assert_close(a: dict, b: dict, tol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=tol, atol=tol, err_msg=k)


@pytest.mark.parametrize("val_chars", ["0", "333"])  # the whole held-out tail, or a sample cut across workers
def test_two_workers_follow_one_worker_in_float64_with_dropout(corpus, tmp_path, val_chars):
    one, two = tmp_path / "one", tmp_path / "two"
    train(corpus, one, "--max-steps", "20", "--workers", "1", "--val-chars", val_chars)
    r = train(corpus, two, "--max-steps", "20", "--workers", "2", "--val-chars", val_chars)
    assert "2 workers (local processes, 4 rows each" in r.stderr
    a, b = losses(one), losses(two)
    assert [s for s, *_ in a] == [s for s, *_ in b] and len(a) >= 4
    for (_, ta, va), (_, tb, vb) in zip(a, b):
        assert tb == pytest.approx(ta, rel=1e-9, abs=1e-9)
        assert (va is None) == (vb is None) and (va is None or vb == pytest.approx(va, rel=1e-9))
    assert_close(weights(one), weights(two), 1e-9)  # parameters, optimizer moments, carried state
    assert meta(two)["train"]["workers"] == 2 and meta(one)["train"]["workers"] == 1


def test_same_workers_same_seed_is_bit_identical(corpus, tmp_path):
    train(corpus, tmp_path / "a", "--max-steps", "12", "--workers", "2")
    train(corpus, tmp_path / "b", "--max-steps", "12", "--workers", "2")
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_resume_with_the_recorded_workers_is_exact_and_with_others_the_same_math(corpus, tmp_path):
    straight = tmp_path / "straight"
    train(corpus, straight, "--max-steps", "20", "--workers", "2")
    half = tmp_path / "half"
    train(corpus, half, "--max-steps", "10", "--workers", "2")
    other = tmp_path / "other"
    other.mkdir()
    for p in half.iterdir():
        (other / p.name).write_bytes(p.read_bytes())

    r = cli("train", "--resume", half, "--max-steps", "20")  # no --workers: the recorded 2
    assert r.returncode == 0, r.stderr
    assert "2 workers" in r.stderr
    a, b = weights(straight), weights(half)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)

    r = cli("train", "--resume", other, "--max-steps", "20", "--workers", "3")
    assert r.returncode == 0, r.stderr
    assert "3 workers" in r.stderr and meta(other)["train"]["workers"] == 3
    assert_close(weights(straight), weights(other), 1e-9)


def test_more_workers_than_rows_is_a_usage_error(corpus, tmp_path):
    r = cli("train", corpus, "--out", tmp_path / "r", *TINY, "--workers", "9", "--max-steps", "2")
    assert r.returncode == 2 and "--workers 9 is more than the batch size 8" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "r").exists()


def test_divergence_with_workers_writes_nothing(corpus, tmp_path):
    run = tmp_path / "run"
    train(corpus, run, "--max-steps", "4", "--workers", "2")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.suffix in (".npz", ".jsonl")}
    r = cli("train", "--resume", run, "--lr", "1e30", "--max-steps", "40", "--eval-every", "1")
    assert r.returncode == 1, r.stderr
    assert "diverged" in r.stderr and "lower learning rate" in r.stderr and "Traceback" not in r.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.suffix in (".npz", ".jsonl")} == before


# ---------------------------------------------------------------------- faults, as real processes


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its parent's bookkeeping is left


def wait_for_workers(p: subprocess.Popen, run: Path, n: int) -> list[int]:
    """The worker pids once training is under way (the first checkpoint written)."""
    deadline = time.time() + 90
    while time.time() < deadline and p.poll() is None:
        kids = children(p.pid)
        if len(kids) == n and (run / "latest.npz").exists():  # n compute workers under the coordinator
            return kids
        time.sleep(0.1)
    p.kill()
    raise AssertionError(f"training did not start with {n} workers: {p.communicate()[1]}")


def gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not any(alive(q) for q in pids):
            return True
        time.sleep(0.1)
    return False


LONG = [*TINY, "--dtype", "float32", "--epochs", "100000", "--workers", "2"]


@pytest.mark.parametrize("how", ["group", "main"])
def test_sigint_stops_every_worker_at_the_same_step_and_saves(corpus, tmp_path, how):
    """Ctrl-C in a terminal signals the whole process group; `kill -INT` only the main process."""
    run = tmp_path / "run"
    p = popen("train", corpus, "--out", run, *LONG)
    kids = wait_for_workers(p, run, 2)
    t0 = time.time()
    if how == "group":
        os.killpg(p.pid, signal.SIGINT)
    else:
        os.kill(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    assert time.time() - t0 < 15
    assert "interrupted (SIGINT)" in err and "Traceback" not in err
    assert gone_within(kids, 5)
    step = meta(run)["train"]["step"]
    assert step >= 1 and weights(run)  # one consistent latest.npz, loadable


def test_sigterm_saves_and_exits_143_and_a_second_writer_is_refused_meanwhile(corpus, tmp_path):
    run = tmp_path / "run"
    p = popen("train", corpus, "--out", run, *LONG)
    kids = wait_for_workers(p, run, 2)
    second = cli("train", "--resume", run, "--max-steps", "100000", "--workers", "2")
    assert second.returncode == 1 and "in use by another lstmgen train" in second.stderr
    os.kill(p.pid, signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 143, err
    assert gone_within(kids, 5) and meta(run)["train"]["step"] >= 1


def test_a_killed_worker_stops_the_run_with_one_line(corpus, tmp_path):
    run = tmp_path / "run"
    p = popen("train", corpus, "--out", run, *LONG)
    kids = wait_for_workers(p, run, 2)
    time.sleep(0.3)
    os.kill(kids[0], signal.SIGKILL)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 1, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "worker 1" in lines[0] and "SIGKILL" in lines[0] and "--resume" in lines[0]
    assert "Traceback" not in err
    assert meta(run)["train"]["step"] >= 1  # the last checkpoint still loads
    assert gone_within(kids, 5)


def test_workers_end_by_themselves_when_the_main_process_is_killed(corpus, tmp_path):
    run = tmp_path / "run"
    p = popen("train", corpus, "--out", run, *LONG)
    kids = wait_for_workers(p, run, 2)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate(timeout=30)
    assert gone_within(kids, 10), "a worker outlived the main process"
    # the run directory is free again and its checkpoint intact
    r = cli("train", "--resume", run, "--max-steps", str(meta(run)["train"]["step"] + 2), "--workers", "1")
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------- MPI


def test_mpiexec_two_ranks_compute_what_two_local_workers_do(corpus, tmp_path):
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'lstmgen[mpi]'); .ci/run installs it "
                                         "when it can")
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        mpiexec = Path(shutil.which("mpiexec") or "mpiexec")
    mpi, local = tmp_path / "mpi", tmp_path / "local"
    r = subprocess.run([str(mpiexec), "-n", "2", sys.executable, "-m", "lstmgen", "train", str(corpus), "--out",
                        str(mpi), *TINY, "--max-steps", "12"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "2 workers (MPI ranks" in r.stderr
    assert r.stderr.count("done (max-steps)") == 1  # rank 0 alone reports
    train(corpus, local, "--max-steps", "12", "--workers", "2")
    # two ranks add a + b whichever way round: the same numbers as the local workers
    assert_close(weights(mpi), weights(local), 1e-12)
    assert [(s, t) for s, t, _ in losses(mpi)] == [(s, t) for s, t, _ in losses(local)]


def test_signals_at_random_moments_are_agreed_by_every_worker(corpus, tmp_path):
    """A signal reaches the main process at any point of a step, evaluation or save: every decision after
    it is taken on the agreed stop, so the workers never fall out of step (which would sum one
    worker's state with another's flags, or hang)."""
    rnd = np.random.default_rng(7)
    for n in range(6):
        run = tmp_path / f"run{n}"
        p = popen("train", corpus, "--out", run, *LONG, "--eval-every", "1")
        wait_for_workers(p, run, 2)
        time.sleep(float(rnd.uniform(0.0, 0.4)))
        sig = (signal.SIGTERM, signal.SIGINT)[n % 2]
        os.kill(p.pid, sig)
        _, err = p.communicate(timeout=60)
        assert p.returncode == (143 if sig == signal.SIGTERM else 130), err
        assert f"interrupted ({sig.name})" in err and "Traceback" not in err
        assert meta(run)["train"]["step"] >= 1


SIGNAL_AFTER_VALIDATION = """
import sys
from pathlib import Path
from lstmgen.training import Trainer, TrainOptions, new_trainer, start_workers

real = Trainer.evaluate
def evaluate(self):  # the signal lands on the main process right after the workers agreed on validation
    val = real(self)
    if self.group.rank == 0 and self.step >= 4:
        self.stop_request = "SIGTERM"
    return val
Trainer.evaluate = evaluate
opts = TrainOptions(hidden=16, embed=8, batch_size=8, seq_len=20, eval_every=2, max_steps=10_000, workers=2)
tr = new_trainer(Path(sys.argv[1]), Path(sys.argv[2]), opts)
group = start_workers(tr, 1)
try:
    summary = tr.run()
finally:
    group.close()
print(summary.stop_reason, summary.step)
"""


def test_a_signal_between_agreement_and_decision_keeps_the_workers_in_step(corpus, tmp_path):
    r = subprocess.run([sys.executable, "-c", SIGNAL_AFTER_VALIDATION, str(corpus), str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    reason, step = r.stdout.split()
    assert reason == "SIGTERM" and int(step) >= 4
    assert meta(tmp_path / "run")["train"]["step"] == int(step)


def test_a_run_records_its_dropout_scheme_and_resuming_an_older_one_says_it_goes_on_differently(corpus, tmp_path):
    from lstmgen import checkpoint as ckpt_io

    run = tmp_path / "run"
    train(corpus, run, "--max-steps", "6", "--workers", "1")
    assert meta(run)["train"]["dropout_masks"] == "philox-per-row-u16"
    r = cli("train", "--resume", run, "--max-steps", "8")
    assert r.returncode == 0, r.stderr
    assert "dropout masks" not in r.stderr  # this version's own run: exact, nothing to say
    ck = ckpt_io.load(run / "latest.npz")  # as an earlier lstmgen (float masks) left it
    ck.meta["train"]["dropout_masks"] = "philox-per-row"
    ckpt_io.save(run / "latest.npz", ck)
    r = cli("train", "--resume", run, "--max-steps", "10")
    assert r.returncode == 0, r.stderr
    assert "dropout masks up to step 8 were drawn by another lstmgen version" in " ".join(r.stderr.split())
    assert meta(run)["train"]["dropout_masks"] == "philox-per-row-u16" and meta(run)["train"]["step"] == 10
