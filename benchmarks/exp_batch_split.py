"""Experiment behind RESULTS.md "Where the limit is": can the two cores share one recurrence?

One LSTM layer, forward + backward over T = 100, timed three ways (medians of 5):
  - the whole batch on one thread, BLAS at 2 threads (what lstmgen does);
  - the whole batch, BLAS at 1 thread;
  - the batch split in two halves, each half's recurrence (1-thread BLAS GEMMs and its
    elementwise work) on its own Python thread.

    python benchmarks/exp_batch_split.py                 # (H, B) = (256, 64) (512, 32) (128, 32) (256, 256)
    python benchmarks/exp_batch_split.py --sizes 384x32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lstmgen import cells  # noqa: E402
from lstmgen.threads import set_threads  # noqa: E402


def measure(H: int, B: int, T: int = 100, reps: int = 5) -> tuple[float, float, float]:
    spec = cells.CELLS["lstm"]
    rng = np.random.default_rng(0)
    rec = {"w_hh": (rng.standard_normal((4 * H, H)) * 0.05).astype(np.float32)}
    xp = rng.standard_normal((T, 4 * H, B)).astype(np.float32)  # time-major, as the cells read it
    dhs = (rng.standard_normal((H, T, B)) * 0.1).astype(np.float32)

    def state(b):
        return tuple(np.zeros((H, b), np.float32) for _ in range(spec.n_states))

    def run(cols):
        x, d = xp[:, :, cols].copy(), np.ascontiguousarray(dhs[:, :, cols])  # (the forward consumes x)
        _, _, cache = spec.forward(x, state(x.shape[2]), rec)
        return spec.backward(d, state(x.shape[2]), cache)

    pool = ThreadPoolExecutor(2)

    def split():
        for f in [pool.submit(run, slice(0, B // 2)), pool.submit(run, slice(B // 2, B))]:
            f.result()

    def median_ms(f):
        f()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return 1e3 * statistics.median(ts)

    set_threads(2)
    whole2 = median_ms(lambda: run(slice(None)))
    set_threads(1)
    whole1 = median_ms(lambda: run(slice(None)))
    halves = median_ms(split)
    set_threads(2)
    pool.shutdown()
    return whole2, whole1, halves


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["256x64", "512x32", "128x32", "256x256"], help="HxB")
    args = ap.parse_args()
    print(f"{'H, B':>10} {'2-thr BLAS':>11} {'1-thr BLAS':>11} {'2 × half':>9} {'gain':>6}")
    for size in args.sizes:
        H, B = map(int, size.split("x"))
        w2, w1, hv = measure(H, B)
        print(f"{H:>5}, {B:<3} {w2:9.1f}ms {w1:9.1f}ms {hv:7.1f}ms {w2 / hv:5.2f}×", flush=True)


if __name__ == "__main__":
    main()
