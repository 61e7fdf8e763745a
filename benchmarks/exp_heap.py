"""What keeping freed memory (lstmgen/heap.py) does to a training step: lstmgen's and PyTorch's.

Each measurement is a fresh process, with or without ``keep_freed_memory()`` before anything else
runs, alternated pair by pair so the machine's drift hits both alike. lstmgen: one worker's step
(its rows of the batch, 1 BLAS thread) with minor page faults counted by getrusage; PyTorch:
the same model at the whole batch, its own threads (it is the allocator, not lstmgen, that matters).

    python benchmarks/exp_heap.py                          # default model, 16 and 32 rows; PyTorch
    python benchmarks/exp_heap.py --pairs 5 --configs b c
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"default": (1, 384, 32), "b": (2, 256, 64), "c": (2, 512, 32)}  # layers, hidden, batch

LSTMGEN = r"""
import os, sys, time, resource
os.environ["OPENBLAS_NUM_THREADS"] = "1"
sys.path.insert(0, sys.argv[1])
import blas_env  # noqa: F401 -- the CPU's own BLAS kernel
from lstmgen import heap
if sys.argv[2] == "keep":
    assert heap.keep_freed_memory(), "glibc did not take the setting"
import numpy as np
from lstmgen.model import CharLM, ModelConfig
from lstmgen.optim import Optimizer, clip_grad_norm_
L, H, B = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
V, T = 65, 100
m = CharLM(ModelConfig(vocab_size=V, cell="lstm", layers=L, hidden=H, embed=64, dropout=0.1), seed=0)
opt = Optimizer("adam", m.flat.size, np.float32)
flat_g, grads = m.new_grads()
rng = np.random.default_rng(0)
x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
state = m.zero_state(B)
def step(i):
    global state
    _, _, state, _ = m.loss_and_grads(x, y, state, rng=np.random.default_rng(i), grads=grads)
    clip_grad_norm_(flat_g, 5.0)
    opt.step(m.flat, flat_g, 1e-3)
for i in range(3):
    step(i)
f0, times = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, []
for i in range(12):
    t0 = time.perf_counter(); step(i); times.append(time.perf_counter() - t0)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 12
print(f"{B * T / np.median(times):.0f} {faults:.1f}")
"""

TORCH = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import blas_env  # noqa: F401
from lstmgen import heap
if sys.argv[2] == "keep":
    assert heap.keep_freed_memory(), "glibc did not take the setting"
import numpy as np, torch
torch.set_num_threads(int(sys.argv[6]))
L, H, B = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
V, E, T = 65, 64, 100
emb, rnn, dec = torch.nn.Embedding(V, E), torch.nn.LSTM(E, H, num_layers=L, batch_first=True), torch.nn.Linear(H, V)
params = [*emb.parameters(), *rnn.parameters(), *dec.parameters()]
opt = torch.optim.Adam(params, lr=2e-3)
rng = np.random.default_rng(0)
x, y = torch.from_numpy(rng.integers(0, V, (B, T))), torch.from_numpy(rng.integers(0, V, (B, T)))
state, times = None, []
for i in range(15):
    t0 = time.perf_counter()
    out, state = rnn(emb(x), state)
    state = tuple(s.detach() for s in state)
    loss = torch.nn.functional.cross_entropy(dec(out).reshape(-1, V), y.reshape(-1))
    opt.zero_grad(set_to_none=True); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 5.0); opt.step()
    times.append(time.perf_counter() - t0)
print(f"{B * T / np.median(times[3:]):.0f}")
"""


def run(code: str, mode: str, *args) -> list[str]:
    cmd = [sys.executable, "-c", code, str(ROOT), mode, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT / "benchmarks").stdout.split()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["default"], choices=list(CONFIGS))
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2, help="PyTorch's threads")
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    for name in args.configs:
        L, H, B = CONFIGS[name]
        for rows in (B // 2, B):
            print(f"lstmgen {name} ({L}x{H}), one worker with {rows} rows: chars/s and page faults a step, "
                  "default | kept")
            for _ in range(args.pairs):
                d, k = run(LSTMGEN, "default", L, H, rows), run(LSTMGEN, "keep", L, H, rows)
                ratio = int(k[0]) / int(d[0])
                print(f"  {d[0]:>7} ({d[1]:>7} faults) | {k[0]:>7} ({k[1]:>5} faults)  kept/default {ratio:.2f}",
                      flush=True)
        if have_torch:
            print(f"PyTorch {name} ({L}x{H}, B{B}, {args.threads} threads): chars/s, default | kept")
            for _ in range(args.pairs):
                d, k = run(TORCH, "default", L, H, B, args.threads), run(TORCH, "keep", L, H, B, args.threads)
                print(f"  {d[0]:>7} | {k[0]:>7}  kept/default {int(k[0]) / int(d[0]):.2f}", flush=True)


if __name__ == "__main__":
    main()
