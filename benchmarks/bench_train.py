"""Training throughput, lstmgen vs PyTorch, side by side in one process on the same data.

Each config trains both implementations with the same sizes, the same batches (state
carried across batches), Adam lr 2e-3 and clipping at global norm 5. Blocks of steps
alternate between the two so that drift of this shared machine hits both alike; the
figures are medians over blocks, and the ratio is the median of the per-pair ratios.

    python benchmarks/bench_train.py                       # all configs
    python benchmarks/bench_train.py --configs a b --blocks 7 --steps 10
PyTorch is optional: without it, only lstmgen's figures are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lstmgen import synthetic  # noqa: E402
from lstmgen.model import CharLM, ModelConfig  # noqa: E402
from lstmgen.optim import Optimizer, clip_grad_norm_  # noqa: E402

CONFIGS = {  # name: (cell, layers, hidden, embed, batch, seq_len, corpus)
    "a": ("lstm", 1, 128, 64, 32, 64, "shakespeare"),
    "b": ("lstm", 2, 256, 64, 64, 100, "shakespeare"),
    "c": ("lstm", 2, 512, 64, 32, 100, "shakespeare"),
    "b-gru": ("gru", 2, 256, 64, 64, 100, "shakespeare"),
    "b-rnn": ("rnn", 2, 256, 64, 64, 100, "shakespeare"),
    "b-cjk": ("lstm", 2, 256, 64, 64, 100, "cjk"),  # V ≈ 5,000: generated CJK text
}
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "tinyshakespeare.txt"


def load_ids(corpus: str, n: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """Character ids and vocabulary size: tinyshakespeare (random ids over 65 characters when
    it is not at hand) or generated CJK text with ~5,000 distinct characters."""
    if corpus == "cjk":
        text = synthetic.cjk(n, 5000, seed)
    elif CORPUS.exists():
        text = CORPUS.read_text(encoding="utf-8")[:n]
    else:
        return np.random.default_rng(seed).integers(0, 65, n), 65
    vocab = sorted(set(text))
    table = {c: i for i, c in enumerate(vocab)}
    return np.fromiter((table[c] for c in text), dtype=np.int64, count=len(text)), len(vocab)


def batches(ids: np.ndarray, B: int, T: int):
    """Row b of batch k+1 continues row b of batch k (state is carried)."""
    n = (len(ids) - 1) // (B * T) * (B * T)
    x = ids[:n].reshape(B, -1)
    y = ids[1 : n + 1].reshape(B, -1)
    k = 0
    while True:
        s = (k * T) % x.shape[1]
        yield x[:, s : s + T], y[:, s : s + T]
        k += 1


class Ours:
    def __init__(self, cell, L, H, E, V, B, dtype="float32"):
        self.model = CharLM(ModelConfig(vocab_size=V, cell=cell, layers=L, hidden=H, embed=E, dtype=dtype))
        self.opt = Optimizer("adam", self.model.flat.size, self.model.cfg.np_dtype)
        self.flat_g, self.grads = self.model.new_grads()
        self.state = self.model.zero_state(B)

    def step(self, x, y):
        loss, _, self.state, _ = self.model.loss_and_grads(x, y, self.state, grads=self.grads)
        clip_grad_norm_(self.flat_g, 5.0)
        self.opt.step(self.model.flat, self.flat_g, 2e-3)
        return loss


class Torch:
    def __init__(self, torch, cell, L, H, E, V, B):
        self.torch = torch
        rnn_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.emb = torch.nn.Embedding(V, E)
        self.rnn = rnn_cls(E, H, num_layers=L, batch_first=True)
        self.dec = torch.nn.Linear(H, V)
        self.params = [*self.emb.parameters(), *self.rnn.parameters(), *self.dec.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=2e-3)
        self.state = None
        self.V = V

    def step(self, x, y):
        torch = self.torch
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        out, state = self.rnn(self.emb(x), self.state)
        self.state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        loss = torch.nn.functional.cross_entropy(self.dec(out).reshape(-1, self.V), y.reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 5.0)
        self.opt.step()
        return loss.item()


def timed_block(impl, data, steps):
    t0 = time.perf_counter()
    for _ in range(steps):
        impl.step(*next(data))
    return time.perf_counter() - t0


def run_config(name, torch, blocks, steps, threads):
    cell, L, H, E, B, T, corpus = CONFIGS[name]
    ids, V = load_ids(corpus, 400_000)
    ours = Ours(cell, L, H, E, V, B)
    ref = Torch(torch, cell, L, H, E, V, B) if torch else None
    data_o, data_t = batches(ids, B, T), batches(ids, B, T)
    timed_block(ours, data_o, 2)  # warm-up
    if ref:
        timed_block(ref, data_t, 2)
    ours_cps, ref_cps, ratios = [], [], []
    for _ in range(blocks):
        to = timed_block(ours, data_o, steps)
        ours_cps.append(B * T * steps / to)
        if ref:
            tr = timed_block(ref, data_t, steps)
            ref_cps.append(B * T * steps / tr)
            ratios.append(tr / to)
    flops = train_flops_per_char(cell, L, H, E, V)
    row = {
        "config": name, "cell": cell, "size": f"{L}x{H} B{B} T{T} V{V}",
        "ours": statistics.median(ours_cps),
        "torch": statistics.median(ref_cps) if ref else None,
        "ratio": statistics.median(ratios) if ref else None,
        "gflops": statistics.median(ours_cps) * flops / 1e9,
    }
    return row


def train_flops_per_char(cell, L, H, E, V):
    """Matrix FLOPs of one training character (forward + backward), the table lookup counted as free."""
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    fwd = 2 * G * H * H * L + 2 * G * H * H * (L - 1) + 2 * H * V
    return 3 * fwd


def sgemm_peak(n=1024, reps=5):
    a = np.random.rand(n, n).astype(np.float32)
    a @ a
    best = min(_timeit(lambda: a @ a) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def _timeit(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--steps", type=int, default=8, help="training steps per timed block")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(args.threads)
        tver = torch.__version__
    except ImportError:
        torch, tver = None, None
        print("PyTorch is not installed: printing lstmgen's figures only.", file=sys.stderr)
    peak = sgemm_peak()
    print(f"numpy {np.__version__}, torch {tver}, threads {args.threads}, "
          f"sgemm 1024³ peak {peak:.0f} GFLOP/s, blocks {args.blocks} × {args.steps} steps")
    print(f"{'config':8} {'cell':5} {'size':26} {'lstmgen c/s':>12} {'torch c/s':>10} {'ratio':>6} "
          f"{'GFLOP/s':>8} {'% peak':>6}")
    for name in args.configs:
        r = run_config(name, torch, args.blocks, args.steps, args.threads)
        tc = f"{r['torch']:10.0f}" if r["torch"] else f"{'-':>10}"
        ratio = f"{r['ratio']:6.2f}" if r["ratio"] else f"{'-':>6}"
        print(f"{r['config']:8} {r['cell']:5} {r['size']:26} {r['ours']:12.0f} {tc} {ratio} "
              f"{r['gflops']:8.1f} {100 * r['gflops'] / peak:6.1f}", flush=True)


if __name__ == "__main__":
    main()
