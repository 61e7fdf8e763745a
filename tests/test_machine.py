"""lstmgen info: the versions, the BLAS NumPy runs (through threadpoolctl), the cores and the worker
count train would choose; a warning when OPENBLAS_CORETYPE forces an older kernel than the CPU has."""

import json
import os

import numpy as np
from typer.testing import CliRunner

from lstmgen import machine
from lstmgen.cli import app
from lstmgen.parallel import available_cores
from lstmgen.threads import blas_info, get_threads, set_threads

runner = CliRunner()


def test_info_json_holds_every_field_of_the_contract():
    r = runner.invoke(app, ["info", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert {"version", "python", "numpy", "blas", "cores", "default_workers", "default_threads", "mpi", "chromium",
            "warnings"} <= set(doc)
    assert set(doc["blas"]) == {"library", "version", "architecture", "threads"}
    assert doc["numpy"] == np.__version__ and doc["cores"] == available_cores()
    assert doc["default_workers"] * doc["default_threads"] <= max(doc["cores"], doc["default_workers"])
    assert isinstance(doc["mpi"], bool) and isinstance(doc["chromium"], bool) and isinstance(doc["warnings"], list)


def test_the_blas_is_described_and_its_threads_set_through_threadpoolctl():
    info = blas_info()
    assert info["library"] in ("openblas", "mkl", "blis") and info["threads"] >= 1
    before = get_threads()
    try:
        assert set_threads(1) and get_threads() == 1 == blas_info()["threads"]
        assert os.environ["OPENBLAS_NUM_THREADS"] == "1"  # for processes started from here
    finally:
        set_threads(before)
    assert get_threads() == before


def test_the_human_view_names_the_blas_kernel_and_the_workers():
    r = runner.invoke(app, ["info"], env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    info = blas_info()
    assert f"kernel {info['architecture']}" in r.stdout and "worker(s)" in r.stdout
    assert "lstmgen[mpi]" in r.stdout or "MPI (mpi4py)     yes" in r.stdout


def test_a_forced_older_kernel_is_warned_about_only_when_the_cpu_has_a_newer_one():
    avx512, avx2 = {"avx", "avx2", "avx512f"}, {"avx", "avx2"}
    (w,) = machine.warnings(avx512, {"OPENBLAS_CORETYPE": "Haswell"}, "openblas")
    assert "OPENBLAS_CORETYPE=Haswell" in w and "AVX2 kernel on a CPU with AVX-512" in w
    assert machine.warnings(avx2, {"OPENBLAS_CORETYPE": "Haswell"}, "openblas") == []
    assert machine.warnings(avx512, {"OPENBLAS_CORETYPE": "SkylakeX"}, "openblas") == []
    assert machine.warnings(avx512, {}, "openblas") == []
    assert len(machine.warnings(avx2, {"OPENBLAS_CORETYPE": "sandybridge"}, "openblas")) == 1
    assert "SSE kernel" in machine.warnings(avx512, {"OPENBLAS_CORETYPE": "Nehalem"}, "openblas")[0]
    assert machine.warnings(set(), {"OPENBLAS_CORETYPE": "Haswell"}, "openblas") == []  # CPU unknown: no guess
    assert machine.warnings(avx512, {"OPENBLAS_CORETYPE": "Haswell"}, "mkl") == []  # not OpenBLAS: no effect
