"""Peak memory: lstmgen against PyTorch at config b, and lstmgen on corpora of growing size.

    python benchmarks/bench_memory.py                       # 100 MB and 1 GB generated corpora
    python benchmarks/bench_memory.py --sizes 50,200 --steps 20

Each measurement is its own process (peak RSS from wait4), so imports and allocations of one
do not count against another. The big corpora are generated (tales from lstmgen.synthetic,
shuffled 1 MB blocks) into --data-dir once and reused. PyTorch is optional: without it the
comparison row says so.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "corpora" / "tinyshakespeare.txt"

TORCH_B = r"""
import sys, time, torch, numpy as np
torch.manual_seed(0); torch.set_num_threads(int(sys.argv[3]))
text = open(sys.argv[1], encoding="utf-8").read()
chars = sorted(set(text)); idx = {c: i for i, c in enumerate(chars)}
data = torch.tensor([idx[c] for c in text], dtype=torch.long)
V, E, H, L, B, T = len(chars), 64, 256, 2, 64, 100
emb, rnn, dec = torch.nn.Embedding(V, E), torch.nn.LSTM(E, H, L), torch.nn.Linear(H, V)
params = [*emb.parameters(), *rnn.parameters(), *dec.parameters()]
opt = torch.optim.Adam(params, lr=2e-3)
per_row = (len(data) - 1) // B
x_all, y_all = data[: per_row * B].view(B, per_row), data[1 : per_row * B + 1].view(B, per_row)
state = None
for step in range(int(sys.argv[2])):
    s = step * T
    x, y = x_all[:, s : s + T].t(), y_all[:, s : s + T].t()
    out, state = rnn(emb(x), state)
    state = tuple(h.detach() for h in state)
    loss = torch.nn.functional.cross_entropy(dec(out).reshape(-1, V), y.reshape(-1))
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 5.0); opt.step()
"""


def peak_rss_mb(cmd: list[str], env: dict | None = None) -> tuple[float, float, int]:
    """Run cmd; return (peak RSS in MB, wall seconds, exit code)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace")
    if p.returncode != 0:
        print(err[-2000:], file=sys.stderr)
    return usage.ru_maxrss / 1024, time.perf_counter() - t, p.returncode


def make_corpus(path: Path, size_mb: int) -> Path:
    if path.exists() and path.stat().st_size >= size_mb * 1_000_000:
        return path
    sys.path.insert(0, str(ROOT))
    from lstmgen.synthetic import prose

    blocks = [prose(1_000_000, seed=s) for s in range(16)]
    rng = random.Random(0)
    tmp = path.with_suffix(".part")
    with open(tmp, "w", encoding="utf-8") as f:
        written = 0
        while written < size_mb * 1_000_000:
            b = blocks[rng.randrange(len(blocks))]
            f.write(b)
            written += len(b.encode("utf-8"))
    tmp.replace(path)
    return path


def lstmgen_cmd(corpus: Path, out: Path, steps: int, threads: int, extra=()) -> list[str]:
    return [sys.executable, "-m", "lstmgen", "train", str(corpus), "--out", str(out), "--layers", "2",
            "--hidden", "256", "--embed", "64", "--batch-size", "64", "--seq-len", "100",
            "--max-steps", str(steps), "--threads", str(threads), *extra]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000", help="generated corpus sizes in MB")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "lstmgen-bench")
    args = ap.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    print(f"machine: {os.cpu_count()} cores; {args.steps} training steps per run, {args.threads} threads")

    print("\n== config b (LSTM 2×256, B64, T100) on tinyshakespeare: peak RSS ==")
    rss_l, t_l, rc = peak_rss_mb(lstmgen_cmd(SHAKESPEARE, work / "b", args.steps, args.threads,
                                             ["--eval-every", str(args.steps)]), env)
    print(f"lstmgen   {rss_l:8.0f} MB   ({t_l:.1f} s, exit {rc})")
    try:
        import torch  # noqa: F401

        script = work / "torch_b.py"
        script.write_text(TORCH_B)
        rss_t, t_t, rc = peak_rss_mb([sys.executable, str(script), str(SHAKESPEARE), str(args.steps),
                                      str(args.threads)])
        print(f"pytorch   {rss_t:8.0f} MB   ({t_t:.1f} s, exit {rc})")
        print(f"ratio lstmgen / pytorch: {rss_l / rss_t:.2f}")
    except ImportError:
        print("pytorch   (not installed: pip install torch==2.13.0 to compare)")

    print("\n== lstmgen on generated corpora of growing size: peak RSS, first run (encodes) and resume ==")
    print(f"{'corpus':>10} {'encode+train':>14} {'peak RSS':>10} {'resume (cached)':>16} {'peak RSS':>10}")
    for size in [int(s) for s in args.sizes.split(",")]:
        corpus = make_corpus(args.data_dir / f"tales-{size}MB.txt", size)
        out = work / f"run-{size}"
        rss1, t1, rc1 = peak_rss_mb(lstmgen_cmd(corpus, out, args.steps, args.threads,
                                                ["--val-frac", "0.0001", "--eval-every", str(args.steps)]), env)
        rss2, t2, rc2 = peak_rss_mb([sys.executable, "-m", "lstmgen", "train", "--resume", str(out),
                                     "--max-steps", str(2 * args.steps), "--threads", str(args.threads)], env)
        mb = corpus.stat().st_size / 1e6
        print(f"{mb:8.0f}MB {t1:12.1f} s {rss1:8.0f} MB {t2:14.1f} s {rss2:8.0f} MB   (exit {rc1}, {rc2})")
    print(f"\n(work files in {work}; corpora in {args.data_dir})")


if __name__ == "__main__":
    main()
