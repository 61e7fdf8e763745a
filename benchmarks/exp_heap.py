"""What keeping freed memory (lstmgen/heap.py) does to a training step: lstmgen's and PyTorch's.

Each measurement is a fresh process, with or without ``keep_freed_memory()`` before the model is
built, alternated pair by pair so the machine's drift hits both alike. Both sides are
bench_train's (``Ours``, ``Torch``, its batches of tinyshakespeare): lstmgen as one worker's step
(its rows of the batch, 1 BLAS thread) with minor page faults counted by getrusage; PyTorch at
the whole batch and its own threads (it is the allocator, not lstmgen, that matters).

    python benchmarks/exp_heap.py                          # default model, 16 and 32 rows; PyTorch
    python benchmarks/exp_heap.py --pairs 5 --configs b c
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import bench_train

HERE = Path(__file__).resolve().parent

CHILD = r"""
import resource, sys, time
import bench_train as bt  # (imports blas_env first: the CPU's own BLAS kernel)
from lstmgen import heap
side, mode, name, rows, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
if mode == "keep":
    assert heap.keep_freed_memory(), "glibc did not take the setting"
cell, L, H, E, B, T, corpus = bt.CONFIGS[name]
ids, V = bt.load_ids(corpus, 400_000)
if side == "lstmgen":
    bt.set_threads(1)
    impl = bt.Ours(cell, L, H, E, V, rows)
else:
    import torch
    torch.set_num_threads(threads)
    impl = bt.Torch(torch, cell, L, H, E, V, rows)
data = bt.batches(ids, rows, T)
bt.timed_block(impl, data, 3)  # warm-up
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
times = sorted(bt.timed_block(impl, data, 1) for _ in range(12))
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 12
print(f"{rows * T / times[len(times) // 2]:.0f} {faults:.1f}")
"""


def run(side: str, mode: str, name: str, rows: int, threads: int) -> tuple[int, float]:
    cmd = [sys.executable, "-c", CHILD, side, mode, name, str(rows), str(threads)]
    cps, faults = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=HERE).stdout.split()
    return int(cps), float(faults)


def pairs(side: str, name: str, rows: int, threads: int, n: int) -> None:
    for _ in range(n):
        (d, fd), (k, fk) = run(side, "default", name, rows, threads), run(side, "keep", name, rows, threads)
        print(f"  {d:>7} ({fd:>7.1f} faults) | {k:>7} ({fk:>5.1f} faults)  kept/default {k / d:.2f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["default"], choices=list(bench_train.CONFIGS))
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2, help="PyTorch's threads")
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    for name in args.configs:
        cell, L, H, E, B, T, _ = bench_train.CONFIGS[name]
        for rows in (B // 2, B):
            print(f"lstmgen {name} ({cell} {L}x{H}), one worker with {rows} rows, 1 BLAS thread: "
                  "chars/s (page faults a step), default | kept")
            pairs("lstmgen", name, rows, 1, args.pairs)
        if have_torch:
            print(f"PyTorch {name} ({cell} {L}x{H}, B{B}, {args.threads} threads): chars/s, default | kept")
            pairs("torch", name, B, args.threads, args.pairs)


if __name__ == "__main__":
    main()
