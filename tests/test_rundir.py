"""Run directories (``lstmgen.rundir``): never another run's, one writer at a time, refusals that
touch nothing."""

import os
from pathlib import Path

import pytest

from lstmgen.errors import ConfigError, LstmgenError
from lstmgen.rundir import RunLock, default_run_dir, prepare_run_dir, remove_if_unused


def test_the_default_directory_is_never_another_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_run_dir(Path("poems.txt")) == Path("runs/poems")
    Path("runs/poems").mkdir(parents=True)
    (Path("runs/poems") / ".lock").touch()  # a lock alone: an empty directory, usable
    assert default_run_dir(Path("poems.txt")) == Path("runs/poems")
    (Path("runs/poems") / "latest.npz").touch()
    assert default_run_dir(Path("poems.txt")) == Path("runs/poems-2")


def test_a_second_writer_is_refused_and_the_lock_goes_with_its_holder(tmp_path):
    lock = prepare_run_dir(tmp_path / "run")
    with pytest.raises(LstmgenError, match=f"is in use by another lstmgen train \\(process {os.getpid()}"):
        RunLock(tmp_path / "run").acquire()
    lock.release()
    with RunLock(tmp_path / "run"):  # free again
        pass


def test_a_file_or_an_existing_run_is_refused_untouched(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        prepare_run_dir(tmp_path / "f")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("{}\n")
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(ConfigError, match="already holds a run; use --resume"):
        prepare_run_dir(run)
    assert sorted(p.name for p in run.iterdir()) == before  # not even a .lock


def test_an_unused_directory_is_removed_and_a_used_one_kept(tmp_path):
    lock = prepare_run_dir(tmp_path / "new")
    lock.release()
    remove_if_unused(tmp_path / "new")
    assert not (tmp_path / "new").exists()
    lock = prepare_run_dir(tmp_path / "kept")
    (tmp_path / "kept" / "latest.npz").write_bytes(b"")
    lock.release()
    remove_if_unused(tmp_path / "kept")
    assert (tmp_path / "kept" / "latest.npz").exists()
