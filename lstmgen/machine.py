"""What lstmgen runs on: versions, the BLAS NumPy uses (library, kernel, threads), the cores, the worker
count and threads ``train`` would choose, MPI and Chromium, and warnings about settings that slow it
down. ``lstmgen info`` prints it; ``train``'s start-up line repeats the warnings."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import sys

import numpy as np

from lstmgen import heap
from lstmgen.parallel import available_cores, default_workers
from lstmgen.threads import blas_info
from lstmgen.version import __version__

# OpenBLAS kernels by the widest vector instructions they use (OPENBLAS_CORETYPE names them)
_KERNEL_LEVEL = {"sapphirerapids": 3, "cooperlake": 3, "skylakex": 3, "haswell": 2, "zen": 2, "sandybridge": 1,
                 "bulldozer": 1, "piledriver": 1, "steamroller": 1, "excavator": 1,
                 **dict.fromkeys(("nehalem", "prescott", "core2", "penryn", "dunnington", "atom", "barcelona",
                                  "opteron", "opteron_sse3", "katmai", "coppermine", "northwood", "banias",
                                  "athlon", "bobcat", "nano"), 0)}
_LEVEL_NAME = {3: "AVX-512", 2: "AVX2", 1: "AVX", 0: "SSE"}
DEFAULT_BATCH = 32  # TrainOptions' default batch size (the default model)


def cpu() -> tuple[str, set[str]]:
    """The CPU's model name and its instruction-set flags (Linux: /proc/cpuinfo; elsewhere, the name only)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return name, flags


def _cpu_level(flags: set[str]) -> int | None:
    if not flags:
        return None
    return 3 if "avx512f" in flags else 2 if "avx2" in flags else 1 if "avx" in flags else 0


def warnings(flags: set[str] | None = None, environ: dict | None = None, library: str | None = None) -> list[str]:
    """Settings that make lstmgen slower than this machine can run it (OPENBLAS_CORETYPE matters only
    when NumPy's BLAS is OpenBLAS)."""
    environ = os.environ if environ is None else environ
    flags = cpu()[1] if flags is None else flags
    library = blas_info()["library"] if library is None else library
    found = []
    if library != "openblas":
        return found
    forced = environ.get("OPENBLAS_CORETYPE", "").strip()
    level, supported = _KERNEL_LEVEL.get(forced.lower()), _cpu_level(flags)
    if forced and level is not None and supported is not None and level < supported:
        found.append(f"OPENBLAS_CORETYPE={forced} forces OpenBLAS's {_LEVEL_NAME[level]} kernel on a CPU with "
                     f"{_LEVEL_NAME[supported]}: matrix products run slower than the CPU can (AVX2 on AVX-512: "
                     "about half speed, measured); unset it")
    return found


def info() -> dict:
    """``lstmgen info --json``."""
    cores = available_cores()
    workers = default_workers(DEFAULT_BATCH)
    name, _ = cpu()
    return {
        "version": __version__, "python": platform.python_version(), "numpy": np.__version__,
        "blas": blas_info(), "cpu": name, "cores": cores, "default_workers": workers,
        "default_threads": max(1, cores // workers),
        "mpi": importlib.util.find_spec("mpi4py") is not None,
        "chromium": any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "freed_memory": heap.describe(),
        "executable": sys.executable,
        "warnings": warnings(),
    }
