"""lstmgen info: what lstmgen runs on, to paste into a bug report."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from lstmgen.cli.base import app, boundary, err, out, safe
from lstmgen.machine import info


@app.command(name="info", epilog="Example: lstmgen info --json")
@boundary
def info_cmd(
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print one JSON object on stdout.")] = False,
):
    """Versions, the BLAS NumPy runs (library, kernel, threads), cores and the workers train would use.

    What to paste into a bug report. A warning names any setting that makes training slower than
    this machine allows (such as OPENBLAS_CORETYPE forcing an older matrix-product kernel).
    """
    doc = info()
    if as_json:
        print(json.dumps(doc))
        return
    b = doc["blas"]
    table = Table(show_header=False, box=None, pad_edge=False)
    rows = [("lstmgen", doc["version"]), ("Python", f"{doc['python']} ({doc['executable']})"),
            ("NumPy", doc["numpy"]),
            ("BLAS", f"{b['library'] or 'unknown'} {b['version'] or ''}, kernel {b['architecture'] or '?'}, "
                     f"{b['threads'] or '?'} threads"),
            ("CPU", f"{doc['cpu']}, {doc['cores']} cores available"),
            ("train would use", f"{doc['default_workers']} worker(s) × {doc['default_threads']} BLAS thread(s) "
                                "for the default model (--workers, --threads)"),
            ("MPI (mpi4py)", "yes" if doc["mpi"] else "no (pip install 'lstmgen[mpi]')"),
            ("Chromium", "yes" if doc["chromium"] else "no (only the inspect --html tests need it)"),
            ("freed memory", doc["freed_memory"]),
            ("platform", doc["platform"])]
    for k, v in rows:
        table.add_row(f"[bold]{k}[/]", safe(v))
    out.print(table)
    for w in doc["warnings"]:
        err.print(f"[yellow]warning:[/] {safe(w)}")
