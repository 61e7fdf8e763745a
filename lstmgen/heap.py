"""Keep freed memory for the next training step instead of handing it back to the operating system.

A training step allocates its large arrays afresh (the input projections, the gates, the
per-step gradients: ~10–50 MB each for the default model) and frees them at the end. glibc's
malloc serves arrays that large with ``mmap``, or returns them to the system when they are
freed, so every step's arrays arrive as fresh pages that the kernel must fault in and zero:
~1,200 page faults a step at the default model's 16 columns a worker, ~4,800 at 32 — measured
2–5 % and 15–30 % of the step's time (benchmarks/RESULTS.md, "Keeping freed memory"). Raising
malloc's mmap and trim thresholds makes freed arrays stay in the heap and the next step reuse
the same pages; the process keeps its peak memory, which it reaches again every step anyway.

Only the ``lstmgen`` program does this (``cli.main``, before any command runs; worker processes
inherit it): a setting of the whole process's allocator is not for a library to make inside a
notebook or another program that imports lstmgen. It is left alone where the user has tuned
malloc (a ``MALLOC_*_`` variable, or ``GLIBC_TUNABLES`` naming ``malloc.``) and outside 64-bit
Linux with glibc; there ``keep_freed_memory`` does nothing and returns False.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
# Arrays up to 1 GiB from the heap; glibc before 2.35 accepts at most HEAP_MAX_SIZE / 2 = 32 MiB
# (64-bit), larger arrays then still come from mmap.
MMAP_THRESHOLDS = (1 << 30, 32 << 20)
TRIM_THRESHOLD = 1 << 30  # the heap keeps up to 1 GiB freed at its top
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

_done: bool | None = None
mmap_threshold: int | None = None  # the mmap threshold glibc took (arrays above it still come from mmap)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed arrays for reuse; True when it took the setting (once a process)."""
    global _done
    if _done is None:
        _done = _mallopt()
    return _done


def user_tuned_malloc(env=os.environ) -> bool:
    """Whether the environment already tunes malloc (then lstmgen leaves it as the user set it)."""
    return any(var in env for var in USER_SETTINGS) or "malloc." in env.get("GLIBC_TUNABLES", "")


def glibc() -> ctypes.CDLL | None:
    """This process's C library if it is 64-bit glibc (musl and others lack these parameters)."""
    if not sys.platform.startswith("linux") or sys.maxsize < 2**32:
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 -- only glibc has it
        libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def _mallopt() -> bool:
    libc = glibc()
    if libc is None or user_tuned_malloc():
        return False
    global mmap_threshold
    mmap_threshold = next((n for n in MMAP_THRESHOLDS if libc.mallopt(M_MMAP_THRESHOLD, n)), None)  # the first taken
    trim_set = bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return mmap_threshold is not None and trim_set


def describe() -> str:
    """What this process does with freed memory, in words (``lstmgen info``)."""
    if _done:
        return "kept for reuse (glibc malloc's mmap/trim thresholds raised by the lstmgen program)"
    if glibc() is None:
        return "the C library's default (not 64-bit glibc: nothing to set)"
    if _done is None:
        return "glibc's default (lstmgen used from Python: only the lstmgen program changes it)"
    if user_tuned_malloc():
        return "left to your MALLOC_*_ / GLIBC_TUNABLES settings"
    return "glibc's default (glibc refused the setting)"
