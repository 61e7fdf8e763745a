"""How many threads lstmgen uses: ``--threads N``, else the usual environment variables.

NumPy reads OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS once, when it is first
imported; ``set_threads`` changes the running BLAS through threadpoolctl (the scikit-learn/joblib
project's library: OpenBLAS, MKL and BLIS on every platform) and sets the variables for child
processes. The same count sizes ``parallel_map``'s pool, which runs large elementwise NumPy work
(NumPy releases the GIL inside its loops) on column spans of an array, one span per thread.
``blas_info`` says which BLAS NumPy runs, with which kernel and how many threads (``lstmgen info``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _blas() -> list[dict]:
    """threadpoolctl's description of the BLAS libraries loaded into this process."""
    import numpy  # noqa: F401 -- make sure NumPy's BLAS is loaded
    from threadpoolctl import threadpool_info

    return [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]


def blas_info() -> dict:
    """NumPy's BLAS: ``{"library", "version", "architecture", "threads"}`` (None where unknown)."""
    libs = _blas()
    if not libs:
        return {"library": None, "version": None, "architecture": None, "threads": None}
    lib = libs[0]
    return {"library": lib.get("internal_api"), "version": lib.get("version"),
            "architecture": lib.get("architecture"), "threads": lib.get("num_threads")}


def _threads_from_env() -> int:
    for var in ENV_VARS:
        v = os.environ.get(var, "")
        if v.isdigit() and int(v) > 0:
            return int(v)
    return os.cpu_count() or 1


_workers = _threads_from_env()
_pool: ThreadPoolExecutor | None = None


def set_threads(n: int) -> bool:
    """Use n threads (BLAS and ``parallel_map``) from now on; True when the running BLAS took it."""
    global _workers, _pool
    for var in ENV_VARS:
        os.environ[var] = str(n)
    if n != _workers and _pool is not None:
        _pool.shutdown()
        _pool = None
    _workers = n
    if not _blas():
        return False
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")  # called, not entered: the limit stays
    return True


def after_fork(n: int) -> None:
    """In a forked child: the parent's thread pool did not come along; use n threads from here on."""
    global _pool
    _pool = None
    set_threads(n)


def get_threads() -> int | None:
    """The running BLAS's thread count, if it can be asked."""
    return blas_info()["threads"]


def column_spans(n: int, min_cols: int = 1) -> list[tuple[int, int]]:
    """[lo, hi) spans splitting n columns into one span per thread (each ≥ min_cols wide)."""
    parts = max(1, min(_workers, n // max(1, min_cols)))
    edges = [n * k // parts for k in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def parallel_map(fn: Callable, items: list) -> list:
    """[fn(item) for item in items], on the thread pool when there is more than one item."""
    global _pool
    if len(items) < 2:
        return [fn(item) for item in items]
    if _pool is None:
        _pool = ThreadPoolExecutor(_workers, thread_name_prefix="lstmgen")
    return list(_pool.map(fn, items))


if __name__ == "__main__":  # python -m lstmgen.threads [N]
    if len(sys.argv) > 1:
        print("set:", set_threads(int(sys.argv[1])))
    print("BLAS threads:", get_threads())
