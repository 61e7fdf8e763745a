"""How many threads NumPy's BLAS uses: ``--threads N``, else the usual environment variables.

NumPy reads OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS once, when it is first
imported; ``set_threads`` changes the running BLAS through its own C entry point (OpenBLAS,
including NumPy's bundled scipy-openblas, or MKL) and sets the variables for child processes.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys

ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads", "MKL_Set_Num_Threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
            "openblas_get_num_threads", "MKL_Get_Max_Threads")


def _blas_libraries() -> list[ctypes.CDLL]:
    """The BLAS libraries loaded into this process (Linux: from /proc/self/maps)."""
    import numpy  # noqa: F401 -- make sure NumPy's BLAS is loaded

    try:
        with open("/proc/self/maps") as f:
            paths = sorted(set(re.findall(r"(/\S*(?:openblas|mkl_rt|libmkl)\S*\.so\S*)", f.read())))
    except OSError:
        return []
    libs = []
    for p in paths:
        try:
            libs.append(ctypes.CDLL(p))
        except OSError:
            pass
    return libs


def _first(lib: ctypes.CDLL, names):
    for n in names:
        if hasattr(lib, n):
            return getattr(lib, n)
    return None


def set_threads(n: int) -> bool:
    """Use n BLAS threads from now on; True when the running BLAS took it."""
    for var in ENV_VARS:
        os.environ[var] = str(n)
    done = False
    for lib in _blas_libraries():
        fn = _first(lib, _SETTERS)
        if fn is not None:
            fn(ctypes.c_int(n))
            done = True
    return done


def get_threads() -> int | None:
    """The running BLAS's thread count, if it can be asked."""
    for lib in _blas_libraries():
        fn = _first(lib, _GETTERS)
        if fn is not None:
            fn.restype = ctypes.c_int
            return int(fn())
    return None


if __name__ == "__main__":  # python -m lstmgen.threads [N]
    if len(sys.argv) > 1:
        print("set:", set_threads(int(sys.argv[1])))
    print("BLAS threads:", get_threads())
