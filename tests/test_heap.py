"""lstmgen.heap: glibc's malloc keeps freed arrays, so a step's large arrays reuse the last step's pages."""

import subprocess
import sys

import pytest

from lstmgen import heap

LINUX_GLIBC = sys.platform.startswith("linux") and heap._mallopt()


def test_idempotent_and_boolean():
    first = heap.keep_freed_memory()
    assert isinstance(first, bool)
    assert heap.keep_freed_memory() is first


@pytest.mark.skipif(not LINUX_GLIBC, reason="mallopt is glibc's")
def test_freed_large_arrays_come_back_without_page_faults():
    """In a fresh process: allocating and freeing a 64 MB array ten times faults its pages in every
    time by default, and once (the first time) after keep_freed_memory."""
    code = """
import resource, sys
import numpy as np
from lstmgen import heap
if sys.argv[1] == "keep":
    assert heap.keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(16 << 20, dtype=np.float32)
f0 = faults()
for _ in range(10):
    np.ones(16 << 20, dtype=np.float32)  # 64 MB, written, freed
print(faults() - f0)
"""
    runs = {mode: int(subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True,
                                     check=True).stdout) for mode in ("keep", "default")}
    # by default at least one fault per allocation (4 KiB pages, or 2 MiB ones where NumPy asks for them)
    assert runs["default"] >= 10, runs
    assert runs["keep"] * 10 <= runs["default"], runs  # reused: the pages stay mapped
