"""Experiment behind RESULTS.md "What a step is made of": one worker's training step against the
matrix products it contains, timed alone on the same shapes.

For each config, one process with one BLAS thread and a worker's share of the batch (``--rows``;
default: the rows each of ``lstmgen train``'s default workers gets on this machine) alternates,
``--reps`` times: a whole training step (bench_train's ``Ours``: forward, backward, clip, Adam),
then the same step's matrix products alone, in four groups:

  recurrent  W_hh h_{t−1} forward and W_hhᵀ d_t backward: 2·L·T products with ``rows`` columns;
  weights    the weight gradients, one GEMM over all T·rows columns per matrix;
  inputs     the input projections of layers ≥ 1 and their gradients into the layer below;
  decoder    the output layer forward, its weight gradient and the gradient into the top layer.

(Layer 0's input projection is a table lookup; its few small products are counted as "the rest".)
Medians of the reps. "the rest" = step − all products: elementwise gate work, copies, the loss,
the lookups, clipping and Adam. "products only" is the ceiling on chars/s of a worker whose
everything-but-products cost nothing. The products timed alone read the same operands every time
(in cache), where the step's read what the time loop just wrote: whatever they lose to that inside
the step is counted in "the rest", which is so an upper estimate.

    python benchmarks/exp_step_parts.py --configs default b c --reps 9
"""

from __future__ import annotations

import argparse
import statistics
import time

import bench_train as bt  # first: the CPU's own BLAS kernel (blas_env), lstmgen on the path
import numpy as np

from lstmgen.cells import CELLS
from lstmgen.heap import keep_freed_memory
from lstmgen.parallel import default_workers
from lstmgen.threads import set_threads


def product_groups(cell: str, L: int, H: int, V: int, b: int, T: int) -> dict[str, list]:
    """Closures running one step's matrix products of each group, on random float32 operands."""
    rng = np.random.default_rng(0)
    G = CELLS[cell].gates * H

    def m(*shape):
        return rng.standard_normal(shape, dtype=np.float32)

    w_hh, h, d, dh = [m(G, H) for _ in range(L)], m(H, b), m(G, b), np.empty((H, b), np.float32)
    ah = np.empty((G, b), np.float32)
    w_ih, x, dflat = m(G, H), m(H, T * b), m(G, T * b)
    w_dec, dlog, out_dec = m(V, H), m(V, T * b), np.empty((V, T * b), np.float32)

    def recurrent():
        for k in range(L):
            for _ in range(T):
                np.matmul(w_hh[k], h, out=ah)
            for _ in range(T):
                np.matmul(w_hh[k].T, d, out=dh)

    def weights():
        for _ in range(L):
            dflat @ x.T  # dW_hh
        for _ in range(L - 1):
            dflat @ x.T  # dW_ih of layers ≥ 1

    def inputs():
        for _ in range(L - 1):
            w_ih @ x  # forward
            w_ih.T @ dflat  # into the layer below

    def decoder():
        np.matmul(w_dec, x, out=out_dec)
        dlog @ x.T
        w_dec.T @ dlog

    return {"recurrent": recurrent, "weights": weights, "inputs": inputs, "decoder": decoder}


def _secs(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def run(name: str, rows: int | None, reps: int) -> None:
    cell, L, H, E, B, T, corpus = bt.CONFIGS[name]
    ids, V = bt.load_ids(corpus, 400_000)
    b = rows or B // default_workers(B)
    ours, data = bt.Ours(cell, L, H, E, V, b, threads=1), bt.batches(ids, b, T)
    groups = product_groups(cell, L, H, V, b, T)
    bt.timed_block(ours, data, 2)
    for f in groups.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in ("step", *groups)}
    for _ in range(reps):
        times["step"].append(bt.timed_block(ours, data, 1))
        for k, f in groups.items():
            times[k].append(_secs(f))
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    prods = sum(med[k] for k in groups)
    flops = {"recurrent": 2 * 2 * L * T * CELLS[cell].gates * H * H * b,
             "weights": 2 * (2 * L - 1) * CELLS[cell].gates * H * H * T * b,
             "inputs": 2 * 2 * (L - 1) * CELLS[cell].gates * H * H * T * b, "decoder": 3 * 2 * V * H * T * b}
    print(f"config {name} ({cell} {L}x{H}, {b} rows, T{T}, V{V}), one BLAS thread, medians of {reps}")
    print(f"{'part':12} {'ms':>7} {'share':>6} {'GFLOP/s':>8}")
    for k in groups:
        rate = flops[k] / med[k] / 1e6 if med[k] > 0 and flops[k] else float("nan")
        print(f"{k:12} {med[k]:7.1f} {med[k] / med['step']:6.0%} {rate:8.1f}")
    rest = med["step"] - prods
    print(f"{'the rest':12} {rest:7.1f} {rest / med['step']:6.0%}")
    print(f"{'step':12} {med['step']:7.1f}   chars/s {b * T / med['step'] * 1e3:8.0f}; "
          f"products only {b * T / prods * 1e3:8.0f} ({med['step'] / prods:.2f}×)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["default", "b", "c"], choices=list(bt.CONFIGS))
    ap.add_argument("--rows", type=int, default=None, help="rows of the batch (default: one worker's share)")
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()
    keep_freed_memory()  # as the lstmgen program does
    set_threads(1)
    print(bt.blas_env.describe(), flush=True)
    for name in args.configs:
        run(name, args.rows, args.reps)


if __name__ == "__main__":
    main()
