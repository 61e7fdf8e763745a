"""The run directory: choosing one, checking it is writable, and one writer at a time.

A run directory holds latest.npz, best.npz, metrics.jsonl and ``.lock``. The lock is an advisory
``flock`` on ``.lock``, held for as long as a ``train`` process lives: the kernel drops it when the
process ends in any way (kill -9 included), so a crashed run never leaves it stuck. The file
itself stays behind, holding the last owner's pid for the error message.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from lstmgen.errors import ConfigError, LstmgenError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer is then the user's to ensure
    fcntl = None

LOCK_NAME = ".lock"


def default_run_dir(corpus: Path) -> Path:
    """runs/<corpus stem>, or runs/<stem>-2, -3, ... : never another run's directory."""
    base = Path("runs") / (corpus.stem or "corpus")
    cand, k = base, 2
    while cand.exists() and any(p.name != LOCK_NAME for p in cand.iterdir()):
        cand = base.with_name(f"{base.name}-{k}")
        k += 1
    return cand


def prepare_run_dir(out: Path) -> RunLock:
    """Create and lock a new run's directory; refuse a file, another run, or a place we cannot write."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create run directory {out}: {e.strerror or e}") from e

    def refuse_a_run() -> None:
        if (out / "latest.npz").exists() or (out / "metrics.jsonl").exists():
            raise ConfigError(f"--out {out} already holds a run; use --resume {out} to continue it, "
                              "or choose another --out")

    RunLock(out).check_free()  # a run being trained there now: say by whom, touching nothing
    refuse_a_run()  # before its lock is touched, and again under the lock (two starting at once)
    lock = RunLock(out).acquire()
    try:
        refuse_a_run()
    except ConfigError:
        lock.release()
        raise
    return lock


class RunLock:
    """Exclusive, non-blocking lock on ``run_dir/.lock`` for the life of this object (or process)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigError(f"cannot write to run directory {self.path.parent}: {e.strerror or e}") from e
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                owner = _read_owner(fd)
                os.close(fd)
                raise LstmgenError(f"run directory {self.path.parent} is in use by another lstmgen train"
                                   f"{owner}; wait for it to finish or stop it first") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        except OSError:
            pass  # the lock is what matters; the note is for people
        self.fd = fd
        remove_stale_temporaries(self.path.parent)
        return self

    def check_free(self) -> None:
        """Refuse, naming the process, when another lstmgen train holds this lock; write nothing."""
        if fcntl is None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return  # no lock file: nobody holds it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise LstmgenError(f"run directory {self.path.parent} is in use by another lstmgen train"
                               f"{_read_owner(fd)}; wait for it to finish or stop it first") from None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_owner(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        pid, _, started = os.read(fd, 200).decode().strip().partition(" ")
        return f" (process {pid}, started {started})" if pid.isdigit() else ""
    except (OSError, UnicodeDecodeError):
        return ""


def remove_if_unused(run_dir: Path) -> None:
    """Remove a run directory this process created, when nothing but the lock and caches is in it."""
    run_dir = Path(run_dir)
    try:
        leftovers = [p for p in run_dir.iterdir() if p.name != LOCK_NAME and not p.name.startswith("ids-")]
        if leftovers:
            return
        for p in run_dir.iterdir():
            p.unlink()
        run_dir.rmdir()
    except OSError:
        pass


def remove_stale_temporaries(run_dir: Path) -> None:
    """Temporary checkpoint files a killed save left behind (only safe while holding the lock)."""
    for p in Path(run_dir).glob(".*.npz.*.tmp"):
        try:
            p.unlink()
        except OSError:
            pass
