"""Experiment behind RESULTS.md "What two workers can reach": the machine's own ceiling for
data-parallel training, measured with lstmgen's step and no coupling at all.

Four ways of training one config, blocks of steps interleaved (medians of the blocks), one BLAS
thread per process:

  one        one process, all B rows (bench_train's ``Ours``) — the base;
  coupled    two workers as ``lstmgen train --workers 2`` runs them (bench_train's ``OursWorkers``:
             B/2 rows each, gradients summed and the same Adam step every step);
  halves     two processes started together, B/2 rows each, that never talk: the coupled run
             without its communication, sums and duplicated optimizer steps;
  twins      two processes started together, all B rows each, that never talk: how much the
             two cores slow each other down (shared cache, memory, or a host that placed both
             virtual CPUs on one physical core) when neither's work shrinks.

speed-up = chars/s over ``one``'s: the median of the per-block ratios (each block of a way against
the ``one`` block of the same round), so drift between rounds cancels. ``twins`` is the ceiling the
hardware allows two workers;
``halves`` adds what halving each worker's matrix columns costs; ``coupled`` adds the coupling.

    python benchmarks/exp_ceiling.py --configs b default c --blocks 5 --steps 4
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time

import bench_train as bt  # first: the CPU's own BLAS kernel (blas_env), lstmgen on the path

from lstmgen.heap import keep_freed_memory
from lstmgen.threads import after_fork, set_threads


def _independent(conn, name: str, rows: int, seed: int) -> None:
    after_fork(1)
    cell, L, H, E, B, T, corpus = bt.CONFIGS[name]
    ids, V = bt.load_ids(corpus, 400_000)
    impl, data = bt.Ours(cell, L, H, E, V, rows, threads=1), bt.batches(ids[seed * 1000 :], rows, T)
    bt.timed_block(impl, data, 2)  # warm-up
    conn.send("ready")
    while (steps := conn.recv()) is not None:
        conn.send(bt.timed_block(impl, data, steps))


class Independent:
    """n forked processes with ``rows`` rows each, started on the same block at once; a block's time
    is the wall time until the last of them is done."""

    def __init__(self, name: str, n: int, rows: int):
        ctx = mp.get_context("fork")
        self.conns, self.procs = [], []
        for k in range(n):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_independent, args=(child, name, rows, k), daemon=True)
            p.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(p)
        for c in self.conns:
            c.recv()
        self.chars_per_step = n * rows

    def block(self, steps: int) -> float:
        t0 = time.perf_counter()
        for c in self.conns:
            c.send(steps)
        for c in self.conns:
            c.recv()
        return time.perf_counter() - t0

    def close(self):
        for c in self.conns:
            c.send(None)
        for p in self.procs:
            p.join(30)


def run(name: str, blocks: int, steps: int) -> dict[str, float]:
    cell, L, H, E, B, T, corpus = bt.CONFIGS[name]
    ids, V = bt.load_ids(corpus, 400_000)
    one_data, coupled_data = bt.batches(ids, B, T), bt.batches(ids, B, T)
    impls = {"halves": Independent(name, 2, B // 2), "twins": Independent(name, 2, B),
             "coupled": bt.OursWorkers(cell, L, H, E, V, B, 2, coupled_data),
             "one": bt.Ours(cell, L, H, E, V, B, threads=1)}
    data = {"one": one_data, "coupled": coupled_data, "halves": None, "twins": None}
    cps: dict[str, list[float]] = {k: [] for k in impls}
    try:
        for k in ("one", "coupled"):
            bt.timed_block(impls[k], data[k], 2)
        for _ in range(blocks):
            for k, impl in impls.items():
                if isinstance(impl, Independent):
                    cps[k].append(impl.chars_per_step * T * steps / impl.block(steps))
                else:
                    cps[k].append(B * T * steps / bt.timed_block(impl, data[k], steps))
                set_threads(1)
    finally:
        for k in ("halves", "twins", "coupled"):
            impls[k].close()
    speedup = {k: [a / b for a, b in zip(v, cps["one"])] for k, v in cps.items()}
    print(f"config {name} ({cell} {L}x{H} B{B} T{T}), one BLAS thread per process, {blocks} × {steps} steps")
    print(f"{'way':8} {'rows each':>9} {'chars/s':>9} {'speed-up':>8} {'(blocks: min–max)':>18}")
    for k, rows in (("one", B), ("twins", B), ("halves", B // 2), ("coupled", B - B // 2)):
        r = speedup[k]
        print(f"{k:8} {rows:9d} {statistics.median(cps[k]):9.0f} {statistics.median(r):8.2f} "
              f"{min(r):11.2f}–{max(r):.2f}", flush=True)
    return {k: statistics.median(v) for k, v in speedup.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["b", "default", "c"], choices=list(bt.CONFIGS))
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4, help="training steps per timed block")
    args = ap.parse_args()
    keep_freed_memory()  # as the lstmgen program does; forked processes inherit it
    set_threads(1)
    print(bt.blas_env.describe(), flush=True)
    for name in args.configs:
        run(name, args.blocks, args.steps)


if __name__ == "__main__":
    main()
