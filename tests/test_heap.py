"""lstmgen.heap: the lstmgen program has glibc's malloc keep freed arrays, so a step's large arrays
reuse the last step's pages; a user's own malloc settings, and programs that import lstmgen, are
left alone. Every check runs in a fresh subprocess: the setting is the whole process's."""

import os
import subprocess
import sys

import pytest

from lstmgen import heap

GLIBC = heap.glibc() is not None  # (finds the library; sets nothing)
CLEAN = {k: v for k, v in os.environ.items()
         if k not in heap.USER_SETTINGS and k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}

FAULTS = """
import resource, sys
import numpy as np
from lstmgen import heap
took = heap.keep_freed_memory() if sys.argv[1] == "keep" else None
if took and heap.mmap_threshold < (64 << 20):  # an older glibc caps it at 32 MiB: 64 MB arrays still mmap
    print("capped", 0)
    sys.exit()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(16 << 20, dtype=np.float32)
f0 = faults()
for _ in range(10):
    np.ones(16 << 20, dtype=np.float32)  # 64 MB, written, freed
print(took, faults() - f0)
"""


def _run(code: str, *args: str, env=None) -> str:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True,
                          env=env or CLEAN).stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_freed_large_arrays_come_back_without_page_faults():
    """Allocating and freeing a 64 MB array ten times faults its pages in every time by default, and
    not again after keep_freed_memory."""
    keep, default = _run(FAULTS, "keep").split(), _run(FAULTS, "default").split()
    if keep[0] == "capped":
        pytest.skip("this glibc caps malloc's mmap threshold at 32 MiB (before 2.35)")
    assert keep[0] == "True"
    # by default at least one fault per allocation (4 KiB pages, 64 KiB ones, or 2 MiB where NumPy asks for them)
    assert int(default[1]) >= 10, default
    assert int(keep[1]) * 10 <= int(default[1]), (keep, default)  # reused: the pages stay mapped


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_a_users_malloc_settings_are_left_alone():
    for var, value in [("MALLOC_TRIM_THRESHOLD_", "131072"), ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")]:
        out = _run("from lstmgen import heap; print(heap.keep_freed_memory())", env={**CLEAN, var: value})
        assert out == "False", var
    assert heap.user_tuned_malloc({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1"})
    assert not heap.user_tuned_malloc({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F"})


def test_only_the_program_sets_it():
    """Importing lstmgen, or calling its Typer app from Python (as the API and the tests do), sets nothing;
    the console entry point does, before the command runs."""
    code = """
from unittest import mock
from typer.testing import CliRunner
import lstmgen, lstmgen.cli
import lstmgen.cli.base as base
from lstmgen import heap
CliRunner().invoke(lstmgen.cli.app, ["--version"])
before = heap._done
with mock.patch.object(base, "app", lambda: print(heap._done is not None, end=" ")):
    base.main()
print(before)
"""
    assert _run(code) == "True None"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_info_says_what_the_program_does_with_freed_memory():
    """``lstmgen info`` as the program: kept; with the user's own setting: left to it. Called from Python
    (CliRunner), the JSON says the default is in force."""
    import json

    from typer.testing import CliRunner

    from lstmgen.cli import app

    def program(env):
        r = subprocess.run([sys.executable, "-m", "lstmgen", "info", "--json"], capture_output=True, text=True,
                           check=True, env=env)
        return json.loads(r.stdout)["freed_memory"]

    assert program(CLEAN).startswith("kept for reuse")
    assert program({**CLEAN, "MALLOC_TRIM_THRESHOLD_": "131072"}).startswith("left to your")
    if heap._done is None:  # (nothing in this test session ran the program's main in-process)
        doc = json.loads(CliRunner().invoke(app, ["info", "--json"]).stdout)
        assert doc["freed_memory"].startswith("glibc's default (lstmgen used from Python")
