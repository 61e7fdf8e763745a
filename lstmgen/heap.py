"""Keep freed memory for the next training step instead of handing it back to the operating system.

A training step allocates its large arrays afresh (the input projections, the gates, the
per-step gradients: ~10–50 MB each for the default model) and frees them at the end. glibc's
malloc serves arrays that large with ``mmap`` or returns them to the system when they are
freed, so every step's arrays arrive as fresh pages that the kernel must fault in and zero:
1,200 page faults a step at the default model's 16 columns per worker, 4,800 at 32 — measured
2–5 % and 15–30 % of the step's time (benchmarks/RESULTS.md). Raising malloc's mmap and trim
thresholds makes freed arrays stay in the heap and the next step reuse the same pages: the
process keeps its peak memory, which it reaches again every step anyway.

Linux with glibc only (``mallopt``); elsewhere ``keep_freed_memory`` does nothing and says so.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30  # bytes: arrays up to 1 GiB come from the heap; the heap keeps up to 1 GiB freed

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed arrays for reuse; True when it took the setting (idempotent)."""
    global _done
    if _done is None:
        _done = _mallopt()
    return _done


def _mallopt() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 -- glibc, not musl: only glibc has these parameters
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD))
