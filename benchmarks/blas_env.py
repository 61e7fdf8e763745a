"""Benchmarks run NumPy as a user's machine runs it: import this module before NumPy.

The development machines set OPENBLAS_CORETYPE=Haswell (and OPENBLAS_L2_SIZE), which forces
OpenBLAS's AVX2 kernel on AVX-512 CPUs: matrix products at about half speed, while PyTorch (MKL)
is unaffected. A user's machine has no such override, so the benchmarks remove both from their own
environment (and so from their worker processes) before NumPy loads OpenBLAS. The tests, CI and
lstmgen itself leave the environment as it is. ``LSTMGEN_BENCH_KEEP_KERNEL=1`` keeps the override,
for a row measured the old way.

``describe()`` says what each side runs: NumPy's BLAS (threadpoolctl: library, kernel, threads),
PyTorch's, the CPU, and the single-precision matrix-product peak NumPy reaches here.
"""

from __future__ import annotations

import os
import time

FORCED = {}
if os.environ.get("LSTMGEN_BENCH_KEEP_KERNEL") != "1":
    FORCED = {k: os.environ.pop(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}


def sgemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    """The best of ``repeats`` float32 n×n×n products, in GFLOP/s, at NumPy's current thread count."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def describe(torch_too: bool = True) -> str:
    """Lines for the top of a benchmark's output."""
    from lstmgen.machine import cpu
    from lstmgen.threads import blas_info

    b = blas_info()
    name, flags = cpu()
    lines = [f"cpu: {name} ({'AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else 'no AVX2'})",
             f"numpy BLAS: {b['library']} {b['version']}, kernel {b['architecture']}, {b['threads']} threads; "
             f"sgemm 1024³ {sgemm_gflops():.0f} GFLOP/s at those threads",
             "environment: " + (f"removed {', '.join(f'{k}={v}' for k, v in FORCED.items())} (a user's machine "
                                "has no such override)" if FORCED else
                                "no BLAS kernel override" if os.environ.get("LSTMGEN_BENCH_KEEP_KERNEL") != "1"
                                else "kept as given (LSTMGEN_BENCH_KEEP_KERNEL=1): " +
                                f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')}")]
    if torch_too:
        try:
            import torch

            lines.append(f"torch {torch.__version__}: {torch.get_num_threads()} threads, "
                         f"MKL {'yes' if torch.backends.mkl.is_available() else 'no'}, "
                         f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
        except ImportError:
            lines.append("torch: not installed")
    return "\n".join(lines)
