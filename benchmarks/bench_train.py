"""Training throughput, lstmgen vs PyTorch, side by side on the same data.

Each config trains the implementations with the same sizes, the same batches (state carried
across batches), Adam lr 2e-3 and clipping at global norm 5: lstmgen with N data-parallel
workers (default: what ``lstmgen train`` picks on this machine; one BLAS thread each, the
gradients summed through lstmgen's own worker group every step), lstmgen in one process at
--threads BLAS threads, and PyTorch at --threads threads in a process of its own (without the
allocator setting the lstmgen program makes: lstmgen.heap). Blocks of steps alternate between
them so that drift of this shared machine hits all alike; the figures are medians over
blocks, and each ratio is the median of the per-block ratios against PyTorch.

    python benchmarks/bench_train.py                       # all configs
    python benchmarks/bench_train.py --configs a b --blocks 7 --steps 10
    python benchmarks/bench_train.py --configs b --scaling  # 1, 2, 4, … workers (one thread each)
PyTorch is optional: without it, only lstmgen's figures are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import blas_env  # before NumPy: the CPU's own BLAS kernel, as on a user's machine
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lstmgen import synthetic  # noqa: E402
from lstmgen.heap import keep_freed_memory  # noqa: E402
from lstmgen.model import CharLM, ModelConfig  # noqa: E402
from lstmgen.optim import Optimizer, clip_grad_norm_  # noqa: E402
from lstmgen.parallel import LocalGroup, available_cores, default_workers  # noqa: E402
from lstmgen.threads import after_fork, set_threads  # noqa: E402

CONFIGS = {  # name: (cell, layers, hidden, embed, batch, seq_len, corpus)
    "default": ("lstm", 1, 384, 64, 32, 100, "shakespeare"),  # lstmgen train's defaults
    "default-b64": ("lstm", 1, 384, 64, 64, 100, "shakespeare"),  # the same model, twice the rows
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
    """lstmgen in this process, at the BLAS thread count set before its blocks."""

    def __init__(self, cell, L, H, E, V, B, dtype="float32", threads=None):
        self.model = CharLM(ModelConfig(vocab_size=V, cell=cell, layers=L, hidden=H, embed=E, dtype=dtype))
        self.opt = Optimizer("adam", self.model.flat.size, self.model.cfg.np_dtype)
        self.flat_g, self.grads = self.model.new_grads()
        self.state = self.model.zero_state(B)
        self.threads = threads

    def begin(self):
        if self.threads:
            set_threads(self.threads)

    def step(self, x, y):
        loss, _, self.state, _ = self.model.loss_and_grads(x, y, self.state, grads=self.grads)
        clip_grad_norm_(self.flat_g, 5.0)
        self.opt.step(self.model.flat, self.flat_g, 2e-3)
        return loss


class OursWorkers:
    """lstmgen with n data-parallel worker processes, as ``lstmgen train --workers n`` runs them:
    n forked workers, each on its rows of the batch with one BLAS thread, gradients weighted by
    rows and summed every step, then the same clip and Adam step everywhere; this process is
    rank 0, the coordinator (no rows). The workers keep their own copy of the batch iterator
    and step in lockstep with it."""

    def __init__(self, cell, L, H, E, V, B, n, data):
        self.n, self.B = n, B
        self.ours = Ours(cell, L, H, E, V, B)
        self.data = data
        size = max(self.ours.model.flat.nbytes, 64)

        def worker(group):
            after_fork(1)
            self._join(group)
            while self._go():
                self._step(*next(self.data))
            return 0

        self.group = LocalGroup.start(n + 1, size, worker)
        self._join(self.group)

    def _join(self, group):
        self.g = group
        self.rows = group.rows(self.B)
        self.share = (self.rows.stop - self.rows.start) / self.B
        self.ours.state = self.ours.model.zero_state(self.rows.stop - self.rows.start)

    def _go(self, go: bool = True) -> bool:
        flag = np.array([1.0 if go else 0.0]) if self.g.rank == 0 else np.zeros(1)
        self.g.allreduce_(flag)
        return flag[0] > 0

    def _step(self, x, y):
        o, loss = self.ours, 0.0
        if self.share:
            loss, _, o.state, _ = o.model.loss_and_grads(x[self.rows], y[self.rows], o.state, grads=o.grads)
            o.flat_g *= o.flat_g.dtype.type(self.share)
        else:  # the coordinator
            o.flat_g.fill(0.0)
        self.g.allreduce_(o.flat_g)
        clip_grad_norm_(o.flat_g, 5.0)
        o.opt.step(o.model.flat, o.flat_g, 2e-3)
        return loss

    def begin(self):
        set_threads(1)

    def step(self, x, y):  # rank 0
        self._go()
        return self._step(x, y)

    def close(self):
        self._go(False)
        self.group.close()


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

    def begin(self):
        pass

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


class TorchProcess:
    """PyTorch in a process of its own, as a user runs it. Spawned (a fresh interpreter), so it runs
    without the allocator setting that the ``lstmgen`` program makes (lstmgen.heap) and that this
    process makes for lstmgen's side: measured, that setting speeds PyTorch's own step up by 20-50 %
    too, which no PyTorch user gets by default. It runs timed blocks of steps on request, on its own
    copy of the same batches."""

    def __init__(self, name: str, threads: int):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_torch_server, args=(child, name, threads), daemon=True)
        self.proc.start()
        child.close()
        self.conn.recv()  # ready

    def block(self, steps: int) -> float:
        self.conn.send(steps)
        return self.conn.recv()

    def close(self):
        self.conn.send(None)
        self.proc.join(30)


def _torch_server(conn, name: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    cell, L, H, E, B, T, corpus = CONFIGS[name]
    ids, V = load_ids(corpus, 400_000)
    impl, data = Torch(torch, cell, L, H, E, V, B), batches(ids, B, T)
    conn.send("ready")
    while (steps := conn.recv()) is not None:
        conn.send(timed_block(impl, data, steps))


def timed_block(impl, data, steps):
    if hasattr(impl, "block"):  # runs in another process
        return impl.block(steps)
    impl.begin()
    t0 = time.perf_counter()
    for _ in range(steps):
        impl.step(*next(data))
    return time.perf_counter() - t0


def measure(impls: dict, data: dict, B: int, T: int, blocks: int, steps: int) -> dict[str, list[float]]:
    """chars/s of every implementation per block, blocks interleaved (after a 2-step warm-up each)."""
    for name, impl in impls.items():
        timed_block(impl, data[name], 2)
    cps = {name: [] for name in impls}
    for _ in range(blocks):
        for name, impl in impls.items():
            cps[name].append(B * T * steps / timed_block(impl, data[name], steps))
    return cps


def run_config(name, torch, blocks, steps, threads, workers):
    cell, L, H, E, B, T, corpus = CONFIGS[name]
    ids, V = load_ids(corpus, 400_000)
    n = workers or default_workers(B)
    data = {k: batches(ids, B, T) for k in ("workers", "one", "torch")}
    impls = {"workers": OursWorkers(cell, L, H, E, V, B, n, data["workers"]) if n > 1 else None,
             "one": Ours(cell, L, H, E, V, B, threads=threads),
             "torch": TorchProcess(name, threads) if torch else None}
    impls = {k: v for k, v in impls.items() if v is not None}
    try:
        cps = measure(impls, data, B, T, blocks, steps)
    finally:
        for k in ("workers", "torch"):
            if k in impls:
                impls[k].close()
    best = "workers" if "workers" in cps else "one"

    def ratio(k):
        return statistics.median(a / b for a, b in zip(cps[k], cps["torch"])) if "torch" in cps else None

    return {
        "config": name, "cell": cell, "size": f"{L}x{H} B{B} T{T} V{V}", "n": n,
        "workers": statistics.median(cps[best]), "one": statistics.median(cps["one"]),
        "torch": statistics.median(cps["torch"]) if "torch" in cps else None,
        "ratio": ratio(best), "ratio_one": ratio("one"),
        "gflops": statistics.median(cps[best]) * train_flops_per_char(cell, L, H, E, V) / 1e9,
    }


def scaling(name, blocks, steps, counts):
    """chars/s at each worker count (one BLAS thread each), all counts interleaved block by block."""
    cell, L, H, E, B, T, corpus = CONFIGS[name]
    ids, V = load_ids(corpus, 400_000)
    data = {n: batches(ids, B, T) for n in counts}
    impls = {n: (OursWorkers(cell, L, H, E, V, B, n, data[n]) if n > 1 else Ours(cell, L, H, E, V, B, threads=1))
             for n in counts}
    try:
        cps = measure(impls, data, B, T, blocks, steps)
    finally:
        for impl in impls.values():
            if isinstance(impl, OursWorkers):
                impl.close()
    base = statistics.median(cps[counts[0]])
    print(f"scaling, config {name} ({L}x{H} B{B} T{T}), one BLAS thread per worker, {blocks} × {steps} steps")
    print(f"{'workers':>7} {'rows each':>9} {'chars/s':>9} {'speed-up':>8} {'efficiency':>10}")
    for n in counts:
        c = statistics.median(cps[n])
        print(f"{n:7d} {B // n:9d} {c:9.0f} {c / base:8.2f} {c / base / n * counts[0]:10.2f}", flush=True)


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
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())),
                    help="PyTorch's threads, and lstmgen's BLAS threads in one process")
    ap.add_argument("--workers", type=int, default=None, help="lstmgen's workers (default: lstmgen train's choice)")
    ap.add_argument("--scaling", action="store_true", help="chars/s at 1, 2, 4, … workers up to the cores")
    args = ap.parse_args()
    keep_freed_memory()  # as the lstmgen program does (lstmgen.heap); PyTorch runs in a process without it

    print(blas_env.describe(), flush=True)
    if args.scaling:
        counts = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= available_cores()]
        for name in args.configs:
            scaling(name, args.blocks, args.steps, counts)
        return
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
    print(f"{'config':8} {'cell':5} {'size':26} {'N':>2} {'N workers':>9} {'1 process':>9} {'torch c/s':>9} "
          f"{'ratio N':>7} {'ratio 1':>7} {'GFLOP/s':>8} {'% peak':>6}")
    for name in args.configs:
        r = run_config(name, torch, args.blocks, args.steps, args.threads, args.workers)

        def f(v, w, p=0):
            return f"{v:{w}.{p}f}" if v is not None else f"{'-':>{w}}"

        print(f"{r['config']:8} {r['cell']:5} {r['size']:26} {r['n']:2d} {f(r['workers'], 9)} {f(r['one'], 9)} "
              f"{f(r['torch'], 9)} {f(r['ratio'], 7, 2)} {f(r['ratio_one'], 7, 2)} "
              f"{r['gflops']:8.1f} {100 * r['gflops'] / peak:6.1f}", flush=True)


if __name__ == "__main__":
    main()
