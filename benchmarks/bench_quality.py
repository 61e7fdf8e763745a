"""Learning per minute: validation loss against wall time, lstmgen (its defaults) vs a PyTorch LSTM.

lstmgen runs as a user would run it, in a subprocess:
    lstmgen train CORPUS --val-frac 0.1 --val-chars 0 --max-time <budget>
(its own choice of workers and threads, as a user gets: one worker per core, one BLAS thread each)
and its curve is read from the run's metrics.jsonl. PyTorch trains nn.Embedding → nn.LSTM →
nn.Linear on exactly the same training ids, in the same B parallel streams with the state
carried (lstmgen's BatchStream), Adam, clipping at 5, warm-up then cosine decay that ends with
the time budget; it is validated the same way (the whole held-out tail in B streams from a
zero state) about every 30 s. Both budgets count training and validation time; each side
ends with one more validation after its budget. Numbers are nats per character.

    python benchmarks/bench_quality.py                     # 10 minutes each (≈ 21 minutes)
    python benchmarks/bench_quality.py --minutes 3 --torch-hidden 512 --torch-layers 1
    python benchmarks/bench_quality.py --minutes 3 --lstmgen-args "--hidden 384"
PyTorch is optional: without it, only lstmgen's curve is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import blas_env  # before NumPy: the CPU's own BLAS kernel, as on a user's machine
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lstmgen.config import ModelConfig  # noqa: E402
from lstmgen.networks import network_for  # noqa: E402
from lstmgen.optim import lr_at  # noqa: E402
from lstmgen.text import BatchStream, Vocab, read_text, split  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "tinyshakespeare.txt"
NANOGPT_REPORTED = 1.88  # nanoGPT README: shakespeare_char on CPU, ~3 minutes, val loss ≈ 1.88
EVAL_ROWS = network_for(ModelConfig(vocab_size=2)).eval_rows  # a left-to-right model's rows
MARKS_MIN = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30)


def run_lstmgen(corpus: Path, seconds: float, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "lstmgen", "train", str(corpus), "--val-frac", "0.1", "--val-chars", "0",
               "--max-time", f"{seconds:g}s", "--out", str(out), *extra]
        print("lstmgen:", shlex.join(cmd[2:]), file=sys.stderr, flush=True)
        t0 = time.monotonic()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.monotonic() - t0
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["elapsed_s"], r["val_loss"]) for r in rows if r["val_loss"] is not None]
    chars_per_sec = [r["chars_per_sec"] for r in rows][-1]
    return {"curve": curve, "chars_per_sec": chars_per_sec, "wall_s": wall, "steps": rows[-1]["step"]}


class TorchLM:
    def __init__(self, torch, V, layers, hidden, embed, dropout):
        nn = torch.nn
        self.torch = torch
        self.emb = nn.Embedding(V, embed)
        self.rnn = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True,
                           dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.dec = nn.Linear(hidden, V)
        self.modules = [self.emb, self.rnn, self.drop, self.dec]
        with torch.no_grad():  # forget-gate bias 1, as lstmgen initialises it
            for name, p in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    p[hidden : 2 * hidden] = 1.0
                elif name.startswith("bias_hh"):
                    p[hidden : 2 * hidden] = 0.0

    def parameters(self):
        return [p for m in self.modules for p in m.parameters()]

    def train(self, mode: bool):
        for m in self.modules:
            m.train(mode)

    def __call__(self, x, state):
        out, state = self.rnn(self.emb(x), state)
        return self.dec(self.drop(out)), state


def torch_eval(torch, lm, val_ids: np.ndarray, B: int, T: int) -> float:
    """lstmgen's validation: the held-out tail in B rows, each from a zero state, chunks of T."""
    x, y = (torch.from_numpy(a.astype(np.int64)) for a in EVAL_ROWS(val_ids, B, T))
    per_row = x.shape[1]
    lm.train(False)
    total, n, state = 0.0, 0, None
    with torch.no_grad():
        for s in range(0, per_row, T):
            logits, state = lm(x[:, s : s + T], state)
            total += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y[:, s : s + T].reshape(-1), reduction="sum").item()
            n += y[:, s : s + T].numel()
    lm.train(True)
    return total / n


def run_torch(torch, ids: np.ndarray, V: int, seconds: float, a) -> dict:
    train_ids, val_ids = split(ids, 0.1)
    B, T = a.torch_batch, a.torch_seq
    stream = BatchStream(train_ids, B, T)
    torch.manual_seed(0)
    lm = TorchLM(torch, V, a.torch_layers, a.torch_hidden, a.torch_embed, a.torch_dropout)
    params = lm.parameters()
    opt = torch.optim.Adam(params, lr=a.torch_lr)
    curve, state, step, batch, chars = [], None, 0, 0, 0
    t0 = last_eval = time.monotonic()
    while True:
        now = time.monotonic() - t0
        if now >= seconds:
            break
        for g in opt.param_groups:  # lstmgen's schedule: 50 warm-up steps, cosine ending at the budget
            g["lr"] = lr_at(step, a.torch_lr, "cosine", warmup=50, progress=now / seconds)
        if batch == 0:
            state = None
        x, y = (torch.from_numpy(v) for v in stream.get(batch))
        logits, state = lm(x, state)
        state = tuple(s.detach() for s in state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        step, batch, chars = step + 1, (batch + 1) % stream.batches_per_epoch, chars + B * T
        if time.monotonic() - last_eval >= a.torch_eval_secs:
            curve.append((time.monotonic() - t0, torch_eval(torch, lm, val_ids, B, T)))
            last_eval = time.monotonic()
    train_s = time.monotonic() - t0
    curve.append((train_s, torch_eval(torch, lm, val_ids, B, T)))
    return {"curve": curve, "chars_per_sec": chars / train_s, "wall_s": time.monotonic() - t0, "steps": step}


def best_by(curve, t: float) -> float | None:
    vals = [v for s, v in curve if s <= t]
    return min(vals) if vals else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="PyTorch's threads (lstmgen picks its own)")
    ap.add_argument("--lstmgen-args", default="", help="extra options for lstmgen train (default: none)")
    ap.add_argument("--skip-lstmgen", action="store_true")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--torch-layers", type=int, default=2)
    ap.add_argument("--torch-hidden", type=int, default=256)
    ap.add_argument("--torch-embed", type=int, default=64)
    ap.add_argument("--torch-batch", type=int, default=32)
    ap.add_argument("--torch-seq", type=int, default=100)
    ap.add_argument("--torch-lr", type=float, default=2e-3)
    ap.add_argument("--torch-dropout", type=float, default=0.1)
    ap.add_argument("--torch-eval-secs", type=float, default=30.0)
    ap.add_argument("--json", type=Path, help="write both curves here")
    a = ap.parse_args()
    print(blas_env.describe(), flush=True)
    seconds = a.minutes * 60
    torch = None
    if not a.skip_torch:
        try:
            import torch

            torch.set_num_threads(a.threads)
        except ImportError:
            print("PyTorch is not installed: printing lstmgen's curve only.", file=sys.stderr)
    results = {}
    if not a.skip_lstmgen:
        results["lstmgen"] = run_lstmgen(a.corpus, seconds, shlex.split(a.lstmgen_args))
    if torch is not None:
        text = read_text(a.corpus)
        vocab = Vocab.from_text(text)
        ids = vocab.encode(text)
        print(f"pytorch {torch.__version__}: LSTM {a.torch_layers}x{a.torch_hidden} E{a.torch_embed} "
              f"B{a.torch_batch} T{a.torch_seq} lr {a.torch_lr:g} dropout {a.torch_dropout:g}",
              file=sys.stderr, flush=True)
        results["pytorch"] = run_torch(torch, ids, len(vocab), seconds, a)
    names = list(results)
    print(f"\n{a.corpus.name}, val-frac 0.1, {a.minutes:g} min each, {a.threads} threads; "
          f"best validation loss (nats/char) reached by each time")
    print(f"{'minutes':>8} " + " ".join(f"{n:>9}" for n in names))
    for m in [m for m in MARKS_MIN if m <= a.minutes] + ([a.minutes] if a.minutes not in MARKS_MIN else []):
        vals = [best_by(results[n]["curve"], m * 60) for n in names]
        print(f"{m:8g} " + " ".join(f"{v:9.4f}" if v is not None else f"{'-':>9}" for v in vals))
    final = {n: min(v for _, v in results[n]["curve"]) for n in names}
    print(f"{'final':>8} " + " ".join(f"{final[n]:9.4f}" for n in names))
    print(f"{'chars/s':>8} " + " ".join(f"{results[n]['chars_per_sec']:9.0f}" for n in names))
    print(f"{'steps':>8} " + " ".join(f"{results[n]['steps']:9d}" for n in names))
    if len(names) == 2:
        print(f"lstmgen − pytorch: {final['lstmgen'] - final['pytorch']:+.4f} nats/char")
    print(f"nanoGPT (reported in its README, CPU, ~3 min): {NANOGPT_REPORTED}")
    if a.json:
        a.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, **results}, indent=1))


if __name__ == "__main__":
    main()
